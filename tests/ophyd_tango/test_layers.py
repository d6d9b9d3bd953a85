"""The pieces the layering introduced: the one deadline-wait, and the private-member uses with
their public fallbacks (against the session's TypeZoo server)."""

import threading
from types import SimpleNamespace

import pytest
import tango

from ophyd_tango import TangoDevice, TangoTimeoutError
from ophyd_tango._deadline import Deadline, wait_until
from ophyd_tango.core._private import install_lazy_device_tuple, raw_read_attributes


def test_wait_until_returns_once_true_and_names_what_timed_out():
    calls = []
    wait_until(lambda: calls.append(1) or len(calls) >= 3, 30.0, "never printed", period=0.0)
    assert len(calls) == 3
    with pytest.raises(TangoTimeoutError, match=r"^the zoo: not ready after 0 s$"):
        wait_until(lambda: False, 0.0, "the zoo: not ready", period=0.0)


def test_wait_until_is_woken_by_its_event():
    wake, done = threading.Event(), threading.Event()
    helper = threading.Thread(target=lambda: (done.set(), wake.set()), daemon=True)

    def finished() -> bool:
        if not helper.is_alive() and not done.is_set():
            helper.start()  # on the first check, which must then see False
            return False
        return done.is_set()

    # A period far past the test's own timeout: only the event can end the wait in time.
    wait_until(finished, 600.0, "the helper thread", period=600.0, wake=wake)
    assert done.is_set() and not wake.is_set()  # woken, then cleared for the next wait


def test_deadline_never_waits_past_itself():
    deadline = Deadline(0.0)
    deadline.pause(600.0)  # returns at once: the deadline has passed
    assert deadline.expired and deadline.remaining == 0.0


def test_public_read_path_reads_what_the_binding_reads(zoo_trl):
    proxy = tango.DeviceProxy(zoo_trl)
    public_only = SimpleNamespace(read_attributes=proxy.read_attributes)  # no _read_attributes
    names = ["state_scalar", "state_spectrum"]
    fast, public = raw_read_attributes(proxy)(names), raw_read_attributes(public_only)(names)
    assert fast[0].value == public[0].value == tango.DevState.MOVING
    assert list(fast[1].value) == list(public[1].value) == [tango.DevState.ON, tango.DevState.FAULT]


def test_lazy_device_tuple_falls_back_to_the_library_path():
    class NotOphyd:
        pass

    assert install_lazy_device_tuple(NotOphyd, object, set(), marker="_attribute_components") is False
    assert not hasattr(NotOphyd, "_initialize_device")


def test_generated_class_builds_its_device_tuple_on_first_use(zoo_trl):
    zoo = TangoDevice(zoo_trl, name="zoo")
    fields = type(zoo)._device_tuple._fields
    assert "quiet" in fields and "state_scalar" in fields
    assert set(fields) == {name for name in type(zoo).component_names if not name.startswith("_")}
