"""What motion and acquisition logic need from the device that hosts them, and nothing more."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["LogicHost"]


class LogicHost(Protocol):
    """The device a MoveLogic or AcquisitionLogic works for (a `TangoDevice`)."""

    @property
    def name(self) -> str:
        """The device's bluesky name, for messages and data keys."""
        ...

    @property
    def event_kinds(self) -> tuple[str, ...]:
        """Tango event kinds to subscribe to, in order of preference (empty: poll)."""
        ...

    def notify(self, sub_type: str, **kwargs: Any) -> None:
        """Run the device's subscriptions of `sub_type` (readback, progress) with `kwargs`."""
        ...

    def signal(self, attribute: str) -> Any:
        """The signal of a Tango attribute, by its Tango name (any case)."""
        ...

    def stage(self) -> list[Any]:
        """bluesky stage(): apply the staging settings and arm."""
        ...

    def unstage(self) -> list[Any]:
        """bluesky unstage(): disarm and restore the staging settings."""
        ...
