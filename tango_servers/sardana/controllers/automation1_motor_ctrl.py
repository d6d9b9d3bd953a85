"""Sardana motor controller for the Aerotech Automation1 axes, through their Tango devices.

Axis N of the controller is the N-th device of the `Devices` property (e.g. sim/aerotech/x).
A move writes the axis's `position`; State follows the device's State (MOVING while moving);
abort and stop call the device's `Stop`.
"""

import time

import tango
from sardana import State
from sardana.pool.controller import DefaultValue, Description, MotorController, Type

from ophyd_tango.core.errors import error_description
from tango_servers.sardana._tango_link import DeviceLink, axis_device, sardana_state

# After `position` is written the server may take a moment to show MOVING; until then an axis
# that is not yet at its target still counts as moving, so the Pool does not end the motion early.
START_GRACE = 1.0


class Automation1MotorController(MotorController):
    """Automation1 axes served by our Automation1 Tango server (one device per axis)."""

    gender = "Motor"
    model = "Automation1"
    organization = "tango-bluesky-suite"
    MaxDevice = 64

    ctrl_properties = {
        "Devices": {
            Type: (str,),
            Description: "Tango device of each axis, axis 1 first (e.g. sim/aerotech/x)",
            DefaultValue: [],
        },
    }

    def __init__(self, inst, props, *args, **kwargs):
        MotorController.__init__(self, inst, props, *args, **kwargs)
        self._links: dict[int, DeviceLink] = {}
        self._started: dict[int, tuple[float, float]] = {}  # axis -> (target, grace deadline)
        self._to_start: dict[int, float] = {}

    def _link(self, axis: int) -> DeviceLink:
        return self._links[axis]

    def AddDevice(self, axis):
        self._links[axis] = DeviceLink(axis_device(self.Devices, axis))

    def DeleteDevice(self, axis):
        self._links.pop(axis, None)
        self._started.pop(axis, None)

    def StateOne(self, axis):
        link = self._link(axis)
        try:
            tango_state = link.state()
        except Exception as exc:
            return State.Fault, f"{link.name} does not answer: {error_description(exc)}", self.NoLimitSwitch
        state = sardana_state(tango_state)
        if tango_state == tango.DevState.MOVING:
            self._started.pop(axis, None)
        elif axis in self._started:
            target, deadline = self._started[axis]
            if time.monotonic() < deadline and not self._at_target(link, target):
                return State.Moving, f"{link.name}: move to {target} starting", self.NoLimitSwitch
            self._started.pop(axis, None)
        switches = self.NoLimitSwitch
        if tango_state == tango.DevState.ALARM:
            switches = self._limit_switches(link)
        try:
            status = link.proxy.status()
        except Exception:
            status = f"{link.name} is {tango_state}"
        return state, status, switches

    def _at_target(self, link: DeviceLink, target: float) -> bool:
        try:
            return bool(link.read("at_target"))
        except Exception:
            return False

    def _limit_switches(self, link: DeviceLink) -> int:
        """ALARM means the axis sits on a soft limit: say which one, as a limit switch."""
        try:
            values = link.proxy.read_attributes(["position", "soft_limit_low", "soft_limit_high"])
        except Exception:
            return self.NoLimitSwitch
        position, low, high = (v.value for v in values)
        if position >= high:
            return self.UpperLimitSwitch
        if position <= low:
            return self.LowerLimitSwitch
        return self.NoLimitSwitch

    def ReadOne(self, axis):
        return self._link(axis).read("position")

    def PreStartAll(self):
        self._to_start = {}

    def PreStartOne(self, axis, position):
        self._to_start[axis] = position
        return True

    def StartOne(self, axis, position):
        link = self._link(axis)
        link.write("position", position)
        self._started[axis] = (position, time.monotonic() + START_GRACE)

    def StartAll(self):
        self._to_start = {}

    def AbortOne(self, axis):
        self._started.pop(axis, None)
        self._link(axis).command("Stop")

    def StopOne(self, axis):
        self.AbortOne(axis)

    # Sardana speaks of acceleration *time*; the axis declares acceleration in units/s^2.
    def GetAxisPar(self, axis, name):
        name = name.lower()
        link = self._link(axis)
        if name == "velocity":
            return link.read("velocity")
        if name in ("acceleration", "deceleration"):
            velocity, acceleration = (v.value for v in link.proxy.read_attributes(["velocity", "acceleration"]))
            return velocity / acceleration if acceleration else 0.0
        if name == "base_rate":
            return 0.0
        if name == "step_per_unit":
            return 1.0
        return MotorController.GetAxisPar(self, axis, name)

    def SetAxisPar(self, axis, name, value):
        name = name.lower()
        link = self._link(axis)
        if name == "velocity":
            link.write("velocity", value)
        elif name in ("acceleration", "deceleration"):
            if value <= 0:
                raise ValueError(f"{name} time must be positive, got {value} s")
            link.write("acceleration", link.read("velocity") / value)
        elif name in ("base_rate", "step_per_unit"):
            # Fixed by the controller: positions are in user units already.
            pass
        else:
            MotorController.SetAxisPar(self, axis, name, value)
