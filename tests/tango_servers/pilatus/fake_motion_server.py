"""A test-only stand-in for the motion controller: an axis and a PSO pulse counter, nothing else.

It lets the Pilatus tests drive the sample position and the trigger line exactly (one change
event per pulse, as the Automation1 server pushes them) without depending on its timing.
"""

from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, run


class FakeAxis(Device):
    def init_device(self) -> None:
        super().init_device()
        self._position = 0.0
        self.set_change_event("position", True, False)
        self.set_state(DevState.ON)

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="deg")
    def position(self) -> float:
        return self._position

    @position.write
    def position(self, value: float) -> None:
        self._position = value
        self.push_change_event("position", value)


class FakePso(Device):
    def init_device(self) -> None:
        super().init_device()
        self._count = 0
        self.set_change_event("pso_pulse_count", True, False)
        self.set_state(DevState.ON)

    @attribute(dtype=int)
    def pso_pulse_count(self) -> int:
        return self._count

    @command(dtype_in=int, doc_in="emit this many pulses, one change event each")
    def Pulses(self, count: int) -> None:
        for _ in range(count):
            self._count += 1
            self.push_change_event("pso_pulse_count", self._count)

    @command
    def ResetCount(self) -> None:
        self._count = 0
        self.push_change_event("pso_pulse_count", 0)


def main(args: list[str] | None = None) -> None:
    run((FakeAxis, FakePso), args=args)
