"""A stand-in goniometer axis server for OAV tests: `position` moves instantly and pushes a change event."""

from tango import AttrWriteType
from tango.server import Device, attribute, run


class FakeAxis(Device):
    def init_device(self) -> None:
        super().init_device()
        self._position = 0.0
        self.set_change_event("position", True, False)

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm")
    def position(self) -> float:
        return self._position

    def write_position(self, value: float) -> None:
        self._position = value
        self.push_change_event("position", value)


def main(args: list[str] | None = None) -> None:
    run((FakeAxis,), args=args)
