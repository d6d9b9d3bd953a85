"""A test-only device server: a counter that ticks, so tests can see a live device without hardware."""

import threading

from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property, run


class Heartbeat(Device):
    period = device_property(dtype=float, default_value=0.1)

    def init_device(self) -> None:
        super().init_device()
        self._beats = 0
        self._stop = threading.Event()
        self.set_change_event("beats", True, False)
        self.set_state(DevState.ON)
        threading.Thread(target=self._tick, daemon=True).start()

    def delete_device(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(self.period):
            self._beats += 1
            self.push_change_event("beats", self._beats)

    @attribute(dtype=int, access=AttrWriteType.READ)
    def beats(self) -> int:
        return self._beats

    @command(dtype_in=float)
    def Busy(self, seconds: float) -> None:
        """Hold the device (its monitor) for `seconds`, like a long blocking command."""
        self._stop.wait(seconds)


class Crasher(Device):
    """Exits the whole server as soon as it is created: for the supervisor's give-up path."""

    def init_device(self) -> None:
        raise SystemExit(3)


def main(args: list[str] | None = None) -> None:
    run((Heartbeat, Crasher), args=args)
