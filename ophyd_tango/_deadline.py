"""The one way ophyd_tango waits: for a condition, against a deadline, woken early by events."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .core.errors import TangoTimeoutError

__all__ = [
    "ANSWER_MARGIN",
    "UNANSWERED_LIMIT",
    "UNANSWERED_SPAN",
    "UNREACHABLE_GRACE",
    "Deadline",
    "call_within",
    "wait_until",
]

T = TypeVar("T")
ANSWER_MARGIN = 0.5  # seconds past a link's timeout before a call counts as unanswered
UNREACHABLE_GRACE = 1.0  # seconds a device may fail to answer before what waits on it fails
# After a call went unanswered, the clean-up (stop, unstage) that follows on the same device is
# bounded by UNANSWERED_LIMIT seconds per call, for UNANSWERED_SPAN seconds (see DeviceLink._call).
UNANSWERED_LIMIT = 1.0
UNANSWERED_SPAN = 5.0
# Device calls run here, so that one hung in Tango's client retries (a stopped server: several
# timeouts in a row) never holds its caller past the deadline. Threads start on demand; many, so
# that calls hung on one device never delay calls to the others.
_calls = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="ophyd_tango-call")


class Deadline:
    """A moment `limit` seconds from now (monotonic clock)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.at = time.monotonic() + limit
        self._never_set = threading.Event()

    @property
    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.at

    def pause(self, period: float, wake: threading.Event | None = None) -> None:
        """Wait `period` seconds, never past the deadline, or until `wake` is set (then cleared)."""
        event = wake if wake is not None else self._never_set
        event.wait(min(period, self.remaining))
        if wake is not None:
            wake.clear()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    period: float = 0.2,
    wake: threading.Event | None = None,
) -> None:
    """Return once `predicate()` is true, checking every `period` s or when `wake` is set; raise
    TangoTimeoutError("<what> after <timeout> s") when `timeout` passes first."""
    deadline = Deadline(timeout)
    while not predicate():
        if deadline.expired:
            raise TangoTimeoutError(f"{what} after {timeout:.0f} s")
        deadline.pause(period, wake)


def call_within(limit: float, what: str, function: Callable[..., T], *args: object) -> T:
    """`function(*args)`, waited for at most `limit` s; then TangoTimeoutError("<what>: no answer
    within <limit> s", "API_DeviceTimedOut"), the call left to finish on its own."""
    future = _calls.submit(function, *args)
    try:
        return future.result(timeout=limit)
    except concurrent.futures.TimeoutError:
        future.cancel()  # still queued: never run late
        raise TangoTimeoutError(f"{what}: no answer within {limit:.1f} s", "API_DeviceTimedOut") from None
