"""Flaky: a test-only Tango server whose `reading` attribute starts failing on command `Break`,
as hardware that is switched off mid-run. Run it with `python flaky_server.py Flaky <instance>`."""

import tango
from tango.server import Device, attribute, command, run


class Flaky(Device):
    """`reading` counts up on every read until `Break`; after it every read raises."""

    def init_device(self) -> None:
        super().init_device()
        self._reads = 0
        self._broken = False

    @attribute(dtype=float)
    def reading(self) -> float:
        if self._broken:
            tango.Except.throw_exception("HardwareOff", "the sensor behind reading is switched off", "Flaky.reading")
        self._reads += 1
        return float(self._reads)

    @command
    def Break(self) -> None:
        self._broken = True


if __name__ == "__main__":
    run((Flaky,))
