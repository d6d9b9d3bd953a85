"""Following an attribute of another device, whatever the start order and through restarts.

The subscription engine of `ophyd_tango.core` does the work (events first, polling as fallback,
a liveness ping that notices a restarted server and subscribes again); one engine serves every
follower of a server process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ophyd_tango.core.subscription import AttributeUpdate, Subscription, TangoSubscriber

__all__ = ["AttributeFollower", "split_attribute_name"]

_subscriber: TangoSubscriber | None = None
_subscriber_lock = threading.Lock()


def _shared_subscriber() -> TangoSubscriber:
    global _subscriber
    with _subscriber_lock:
        if _subscriber is None:
            _subscriber = TangoSubscriber()
        return _subscriber


def split_attribute_name(name: str, default_attribute: str) -> tuple[str | None, str, str]:
    """(tango host or None, device, attribute) of `a/b/c`, `a/b/c/attr`, or either behind `tango://host:port/`.

    A device name alone means its `default_attribute`.
    """
    host, rest = None, name
    if name.startswith("tango://"):
        host, _, rest = name.removeprefix("tango://").partition("/")
    parts = rest.split("/")
    if len(parts) == 3 and all(parts):
        return host, rest, default_attribute
    if len(parts) == 4 and all(parts):
        return host, "/".join(parts[:3]), parts[3]
    raise ValueError(f"'{name}' is neither a device (domain/family/member) nor one of its attributes")


class AttributeFollower:
    """Follows one attribute of another device: `on_value(value)` for each new value, `on_error(text)`
    for each error (the device is gone, the read failed), from the engine's threads.

    `name` is a device (then its `default_attribute`) or a full attribute name, optionally behind
    `tango://host:port/`. Never blocks and never raises for a device that is not there (yet):
    `error` says why no value comes, and values resume by themselves once it answers.
    """

    def __init__(
        self,
        name: str,
        default_attribute: str,
        on_value: Callable[[Any], None] = lambda value: None,
        on_error: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.host, self.device, self.attribute = split_attribute_name(name, default_attribute)
        self.value: Any = None
        self.error = "not connected yet"
        self._on_value = on_value
        self._on_error = on_error
        trl = f"tango://{self.host}/{self.device}" if self.host else self.device
        self._subscription: Subscription = _shared_subscriber().subscribe(
            trl, [self.attribute], self._update, wait=False
        )

    @property
    def where(self) -> str:
        """`device/attribute`, as followed."""
        return f"{self.device}/{self.attribute}"

    def _update(self, update: AttributeUpdate) -> None:
        if update.error is not None:
            self.error = update.error
            self._on_error(update.error)
        elif update.value is not None:
            self.value, self.error = update.value, ""
            self._on_value(update.value)

    def close(self) -> None:
        self._subscription.close()
