"""SardanaMotors: a test-only Tango server shaped like Sardana's `Motor` (no bluesky_roles).

Class `Motor`: `Position` (RW, %8.4f, limits -100..100, CHANGING while moving), `Velocity`,
`Acceleration`, `Deceleration`, `Offset`; commands `Stop`, `Abort`; State ON / MOVING / ALARM /
FAULT. Test hooks: `FaultAt` (float: go to FAULT when a move passes this position; NaN at start: never)
and `IgnoreMoves` (bool: accept writes but never move).
Class `PlainStage`: a non-Sardana device whose only clue is a writable `position`.
Moves are simulated by one thread per device at constant velocity.
"""

import math
import threading
import time

import tango
from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, command, run

TICK = 0.01


class _Axis:
    """A constant-velocity axis driven by one thread; calls `changed()` after each step."""

    def __init__(self, changed):
        self.position = 0.0
        self.target = 0.0
        self.velocity = 10.0
        self.fault_at = math.nan
        self.ignore_moves = False
        self.fault = False
        self.moving = False
        self._changed = changed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def move(self, target: float) -> None:
        if self.fault:
            tango.Except.throw_exception("MotorFault", "The motor is in FAULT; Init to clear.", "Motor.move")
        self.target = target
        if self.ignore_moves or target == self.position:
            return
        self.moving = True
        self._wake.set()

    def stop(self) -> None:
        self.target = self.position
        self.moving = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            if not self.moving:
                continue
            step = self.velocity * TICK
            distance = self.target - self.position
            before = self.position
            self.position = self.target if abs(distance) <= step else self.position + math.copysign(step, distance)
            if not math.isnan(self.fault_at) and min(before, self.position) <= self.fault_at <= max(
                before, self.position
            ):
                self.fault, self.moving = True, False
            if self.position == self.target:
                self.moving = False
            self._changed()

    def close(self) -> None:
        self._stop.set()


class Motor(Device):
    def init_device(self):
        super().init_device()
        self._axis = _Axis(self._push)
        self._acceleration = 100.0
        self._deceleration = 100.0
        self._offset = 0.0
        for name in ("Position", "State", "Status"):
            self.set_change_event(name, True, False)
        self._push()

    def delete_device(self):
        self._axis.close()

    def _state(self) -> DevState:
        axis = self._axis
        if axis.fault:
            return DevState.FAULT
        if axis.moving:
            return DevState.MOVING
        return DevState.ON

    def _push(self) -> None:
        state = self._state()
        self.set_state(state)
        self.set_status(
            f"Motor faulted at {self._axis.position:.4f} (simulated)" if state == DevState.FAULT else f"{state}"
        )
        quality = AttrQuality.ATTR_CHANGING if state == DevState.MOVING else AttrQuality.ATTR_VALID
        self.push_change_event("Position", self._axis.position, time.time(), quality)
        self.push_change_event("State", state)
        self.push_change_event("Status", self.get_status())

    def dev_state(self):
        return self._state()

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, format="%8.4f", unit="mm", min_value=-100, max_value=100)
    def Position(self):
        quality = AttrQuality.ATTR_CHANGING if self._axis.moving else AttrQuality.ATTR_VALID
        return self._axis.position, time.time(), quality

    @Position.write
    def Position(self, value):
        self._axis.move(value)
        self._push()

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm/s", min_value=0)
    def Velocity(self):
        return self._axis.velocity

    @Velocity.write
    def Velocity(self, value):
        self._axis.velocity = value

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def Acceleration(self):
        return self._acceleration

    @Acceleration.write
    def Acceleration(self, value):
        self._acceleration = value

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def Deceleration(self):
        return self._deceleration

    @Deceleration.write
    def Deceleration(self, value):
        self._deceleration = value

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def Offset(self):
        return self._offset

    @Offset.write
    def Offset(self, value):
        self._offset = value

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def FaultAt(self):
        return self._axis.fault_at

    @FaultAt.write
    def FaultAt(self, value):
        self._axis.fault_at = value

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE)
    def IgnoreMoves(self):
        return self._axis.ignore_moves

    @IgnoreMoves.write
    def IgnoreMoves(self, value):
        self._axis.ignore_moves = value

    @command
    def Stop(self):
        self._axis.stop()
        self._push()

    @command
    def Abort(self):
        self.Stop()

    @command
    def ClearFault(self):
        self._axis.fault = False
        self._push()


class PlainStage(Device):
    """Not Sardana, no roles: a writable `position`, and State MOVING while it moves."""

    def init_device(self):
        super().init_device()
        self._axis = _Axis(self._push)
        self.set_change_event("position", True, False)
        self.set_change_event("State", True, False)
        self._push()

    def delete_device(self):
        self._axis.close()

    def _push(self) -> None:
        state = DevState.MOVING if self._axis.moving else DevState.STANDBY
        self.set_state(state)
        self.push_change_event("position", self._axis.position)
        self.push_change_event("State", state)

    def dev_state(self):
        return DevState.MOVING if self._axis.moving else DevState.STANDBY

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, format="%6.3f")
    def position(self):
        return self._axis.position

    @position.write
    def position(self, value):
        self._axis.move(value)
        self._push()

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def velocity(self):
        return self._axis.velocity

    @velocity.write
    def velocity(self, value):
        self._axis.velocity = value


def main(args: list[str] | None = None) -> None:
    run((Motor, PlainStage), args=args)


if __name__ == "__main__":
    main()
