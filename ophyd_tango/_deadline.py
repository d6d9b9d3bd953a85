"""The one way ophyd_tango waits: for a condition, against a deadline, woken early by events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .core.errors import TangoTimeoutError

__all__ = ["Deadline", "wait_until"]


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
