"""What every server shares, without a server: the event publisher and refusals."""

import threading

import pytest
import tango

from tango_servers.common import EventPublisher, refusals, refuse
from tango_servers.stack.waiting import wait_until


def test_publisher_pushes_in_order_and_goes_on_after_a_failed_push():
    pushed: list[int] = []

    def push(item: int) -> None:
        if item == 3:
            raise RuntimeError("the device is being deleted")
        pushed.append(item)

    publisher = EventPublisher("test-events", push)
    for item in range(10):
        publisher.offer(item)
    publisher.close(wait=5.0)
    assert pushed == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_latest_only_publisher_skips_what_a_slow_push_missed():
    release, started = threading.Event(), threading.Event()
    pushed: list[int] = []

    def push(item: int) -> None:
        started.set()
        release.wait(5.0)
        pushed.append(item)

    publisher = EventPublisher("test-frames", push, latest_only=True)
    publisher.offer(0)
    assert started.wait(5.0)
    for item in range(1, 6):  # while 0 is being pushed: only the newest waits
        publisher.offer(item)
    release.set()
    wait_until(lambda: pushed == [0, 5], 5.0, message="frames 0 and 5 pushed")
    publisher.close(wait=5.0)
    assert pushed == [0, 5]


def test_close_with_discard_drops_what_waits():
    release, started = threading.Event(), threading.Event()
    pushed: list[int] = []

    def push(item: int) -> None:
        started.set()
        release.wait(5.0)
        pushed.append(item)

    publisher = EventPublisher("test-discard", push)
    publisher.offer(0)
    assert started.wait(5.0)
    publisher.offer(1)
    publisher.close(discard=True)
    release.set()
    publisher.close(wait=5.0)
    assert pushed == [0]


class Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def test_refusals_carry_the_reason_and_the_sentence():
    with pytest.raises(tango.DevFailed) as info, refusals("Dev.write_x", Rejected):
        raise Rejected("AxisDisabled", "axis X is disabled: Enable it first")
    assert (info.value.args[0].reason, info.value.args[0].desc) == (
        "AxisDisabled",
        "axis X is disabled: Enable it first",
    )
    assert info.value.args[0].origin == "Dev.write_x"
    with pytest.raises(tango.DevFailed) as info, refusals("Dev.start", ValueError, reason="Dev_Refused"):
        raise ValueError("not now")
    assert info.value.args[0].reason == "Dev_Refused"
    with pytest.raises(KeyError), refusals("Dev.start", ValueError):
        raise KeyError("not listed: passes through")
    with pytest.raises(tango.DevFailed) as info:
        refuse("Dev_NoFrame", "No frame yet", "Dev.read")
    assert info.value.args[0].desc == "No frame yet"
