"""Statuses whose text says why they failed: bluesky's stop document quotes `str(status)`."""

from __future__ import annotations

import contextlib

from ophyd.status import DeviceStatus

__all__ = ["TangoStatus"]


class TangoStatus(DeviceStatus):
    """A DeviceStatus whose repr carries its exception once it failed, so a run's `reason`
    names the device and Tango's reason rather than `DeviceStatus(..., success=False)`."""

    def __repr__(self) -> str:
        text = f"{type(self).__name__}(device={self.device.name}, done={self.done}, success={self.success}"
        if self.done and not self.success:
            with contextlib.suppress(Exception):
                text += f", error={self.exception(timeout=0)}"
        return text + ")"

    __str__ = __repr__
