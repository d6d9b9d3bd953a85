"""Change events pushed by one thread of their own, in the order they were reported.

Pushing an event takes the device monitor. A backend or control layer that reports while
holding its own lock must not push directly: a command thread may hold the monitor while it
waits for that lock. Reports go into a queue instead, and this thread pushes them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EventPublisher"]

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class EventPublisher(Generic[Item]):
    """Calls `push(item)` from one worker thread for each item `offer`ed, in order.

    `latest_only`: keep only the newest item waiting (frames: a slow client skips frames, the
    camera never waits). A failing `push` is logged and the next items are still pushed.
    """

    def __init__(self, name: str, push: Callable[[Item], None], *, latest_only: bool = False) -> None:
        self._push = push
        self._items: deque[Item] = deque(maxlen=1 if latest_only else None)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, item: Item) -> None:
        """Queue `item` for pushing (any thread; never blocks on the device)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def close(self, *, wait: float | None = None, discard: bool = False) -> None:
        """Stop after pushing what is queued (`discard`: drop it); wait up to `wait` s for that.

        Do not wait from a thread that holds the device monitor: a push in progress needs it.
        """
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify()
        if wait is not None:
            self._thread.join(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closed)
                if not self._items:
                    return
                item = self._items.popleft()
            try:
                self._push(item)
            except Exception:
                log.exception("%s: pushing an event failed", self._thread.name)
