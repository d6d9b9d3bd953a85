"""`TangoSignal`: one Tango attribute as an ophyd Signal of a `TangoDevice`."""

from __future__ import annotations

import threading
from typing import Any

from ophyd import Kind, Signal
from ophyd.signal import ReadOnlyError
from ophyd.status import Status
from ophyd.utils.errors import ReadOnlyError as _ReadOnly  # noqa: F401  (same class; re-export path)

from ._link import AttributeValue, DeviceLink
from .core.errors import TangoDeviceError
from .core.subscription import AttributeUpdate, Subscription
from .core.types import AttributeType

__all__ = ["TangoSignal"]


class TangoSignal(Signal):
    """A Tango attribute. `get()` reads the server (never a stale cache, except inside the
    device's batched `read()`); values are in bluesky form: enum and state by label.

    The Tango name is `tango_attribute`; type and metadata are in `tango_type`.
    """

    # An attribute has nothing to trigger: not bluesky Triggerable, so plans skip the
    # trigger-and-wait (a Status and a wait message per point) and go straight to read().
    trigger = None

    def __init__(
        self,
        *,
        tango_attribute: str,
        name: str,
        parent: Any = None,
        kind: Kind | str = Kind.normal,
        attr_name: str = "",
        labels: Any = None,
        link: DeviceLink | None = None,
    ):
        self._link = link if link is not None else parent._link
        self.tango_attribute = tango_attribute
        self.tango_type: AttributeType = self._link.attribute_type(tango_attribute)
        super().__init__(name=name, parent=parent, kind=kind, attr_name=attr_name, labels=labels, value=None)
        self._metadata.update(
            connected=True,
            read_access=True,
            write_access=self.tango_type.is_writable,
            tango_attribute=tango_attribute,
            units=self.tango_type.unit,
            precision=self.tango_type.precision,
        )
        self._subscription: Subscription | None = None
        self._sub_lock = threading.Lock()

    # ---- reading -------------------------------------------------------------------------------
    @property
    def source_name(self) -> str:
        return self._link.source(self.tango_attribute)

    def _fetch(self) -> AttributeValue:
        value = self._link.read_one(self.tango_attribute)
        self._readback = value.value
        self._metadata["timestamp"] = value.timestamp
        return value

    def get(self, **kwargs: Any) -> Any:
        """The current value from the server (enum/state as labels)."""
        return self.tango_type.to_bluesky(self._fetch().value)

    def read(self) -> dict[str, dict[str, Any]]:
        value = self._fetch()
        return {self.name: {"value": self.tango_type.to_bluesky(value.value), "timestamp": value.timestamp}}

    def describe(self) -> dict[str, dict[str, Any]]:
        atype = self.tango_type
        value = None
        if not atype.is_scalar:
            latest = self._link.latest(self.tango_attribute)
            value = latest.value if latest is not None else self._fetch().value
        return {self.name: atype.data_key(self.source_name, value)}

    @property
    def timestamp(self) -> float:
        return self._metadata.get("timestamp") or 0.0

    @property
    def limits(self) -> tuple[float, float]:
        atype = self.tango_type
        return (atype.min_value or 0, atype.max_value or 0) if atype.min_value or atype.max_value else (0, 0)

    @property
    def precision(self) -> int | None:
        return self.tango_type.precision

    @property
    def enum_strs(self) -> tuple[str, ...] | None:
        """Labels of a DevEnum (or DevState) attribute, as ophyd's EPICS enums offer them."""
        return tuple(self.tango_type.choices) or None

    @property
    def write_access(self) -> bool:
        return self.tango_type.is_writable

    # ---- writing -------------------------------------------------------------------------------
    def check_value(self, value: Any) -> None:
        self.tango_type.to_tango(value)

    def put(self, value: Any, **kwargs: Any) -> None:
        """Write the attribute; a wrong type raises TypeError/ValueError, Tango's refusal
        TangoDeviceError with Tango's reason."""
        if not self.write_access:
            raise ReadOnlyError(f"{self.name} ({self._link.key}/{self.tango_attribute}) is read-only")
        self._link.write(self.tango_attribute, self.tango_type.to_tango(value))

    def set(self, value: Any, **kwargs: Any) -> Status:
        """Write and return a finished Status (failed, with the reason, if the write was refused)."""
        status = Status(self)
        try:
            self.put(value)
        except (TangoDeviceError, ReadOnlyError, TypeError, ValueError) as exc:
            status.set_exception(exc)
        else:
            status.set_finished()
        return status

    # ---- monitoring ----------------------------------------------------------------------------
    def subscribe(self, callback: Any, event_type: str | None = None, run: bool = True) -> int:
        """ophyd subscription; value updates come from Tango events (or the engine's polling)."""
        cid = super().subscribe(callback, event_type=event_type, run=run)
        if (event_type or self._default_sub) == self.SUB_VALUE:
            self._follow()
        return cid

    def _follow(self) -> None:
        with self._sub_lock:
            if self._subscription is None:
                self._subscription = self._link.subscriber.subscribe(
                    self._link.trl, [self.tango_attribute], self._on_update, kinds=self.parent.event_kinds
                )

    def _on_update(self, update: AttributeUpdate) -> None:
        if update.error is not None:
            self._metadata["connected"] = False
            return
        self._metadata["connected"] = True
        self._link.remember(self.tango_attribute, AttributeValue(update.value, update.quality, update.timestamp))
        old = self._readback
        self._readback = update.value
        self._metadata["timestamp"] = update.timestamp
        self._run_subs(
            sub_type=self.SUB_VALUE,
            old_value=self.tango_type.to_bluesky(old),
            value=self.tango_type.to_bluesky(update.value),
            timestamp=update.timestamp,
        )

    def destroy(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        super().destroy()
