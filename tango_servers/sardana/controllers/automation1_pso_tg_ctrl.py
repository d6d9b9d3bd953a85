"""Sardana trigger/gate controller: the Automation1 PSO fires the hardware triggers of a continuous scan.

Axis N is the PSO on the travel of the N-th device of the `Devices` property (e.g.
sim/aerotech/omega); its Automation1 controller and PSO axis name are that device's own
`controller` and `axis` properties. In a measurement group, a channel synchronized by
`pso_omega` (Trigger or Gate) takes one frame per PSO pulse of an `ascanct omega ...`.

Sardana describes the triggers in the Position domain (SynchDescription): `Initial` (the
first point), `Total` (the signed spacing) and `Repeats` (the number of points). The PSO
fires at arm position + k * pso_distance (k != 0), so before arming the axis is moved back,
by less than one spacing, to a position a whole number of spacings before `Initial` (it must
be resting at the scan's start position, `Initial` - `Delay`: else it is not the scanned axis
and the scan is refused); the
window [first - d/2, last + d/2] lets exactly `Repeats` pulses through. The PSO makes pulses,
not gates: `Active` (the gate width) is not used; a detector in EXTERNAL_GATE takes its own
`acq_expo_time` per pulse.
"""

import math
import time
from dataclasses import dataclass

import tango
from sardana import State
from sardana.pool.controller import DefaultValue, Description, TriggerGateController, Type
from sardana.pool.pooldefs import SynchDomain, SynchParam

from ophyd_tango.core.errors import error_description
from tango_servers.sardana._tango_link import DeviceLink, axis_device

# The alignment move is shorter than one point spacing; this bounds it on a loaded machine.
ALIGN_TIMEOUT = 30.0
ALIGN_POLL = 0.02
# Positions closer than this fraction of a spacing count as equal (floating point).
ALIGN_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PsoPlan:
    """What one SynchDescription asks of the PSO: pulses at first + i * spacing, i < repeats."""

    first: float
    spacing: float  # signed: negative for a scan towards lower positions
    repeats: int
    pre_start: float | None = None  # where the scanned motor waits before it flies (Initial - Delay)

    @property
    def distance(self) -> float:
        return abs(self.spacing)

    @property
    def window(self) -> tuple[float, float]:
        last = self.first + (self.repeats - 1) * self.spacing
        low, high = sorted((self.first, last))
        return low - self.distance / 2, high + self.distance / 2

    def check_at_pre_start(self, axis: str, current: float) -> None:
        """Refuse when `axis` is not where the scanned motor waits: it is not the scanned axis."""
        if self.pre_start is not None and abs(current - self.pre_start) > self.distance / 2:
            raise ValueError(
                f"{axis} is at {current:g}, not at the scan's start position {self.pre_start:g}: "
                "the PSO synchronizer must be the one of the scanned motor (set_meas_conf synchronizer ...)"
            )

    def arm_position(self, current: float) -> float:
        """The position at or behind `current` (as seen from the scan direction) a whole number
        of spacings, at least one, before the first pulse."""
        behind = (self.first - current) / self.spacing  # spacings from current to the first pulse
        steps = max(1, math.ceil(behind - ALIGN_TOLERANCE))
        return self.first - steps * self.spacing


def pso_plan(description) -> PsoPlan:
    """The PSO plan of a Sardana synchronization description (one group, Position domain)."""
    if len(description) != 1:
        raise ValueError(f"the PSO takes one group of equidistant triggers, got {len(description)} groups")
    (group,) = description
    try:
        first = float(group[SynchParam.Initial][SynchDomain.Position])
        spacing = float(group[SynchParam.Total][SynchDomain.Position])
    except KeyError:
        raise ValueError(
            "the PSO fires on travel: it needs a Position-domain synchronization (ascanct, dscanct, meshct), "
            "not a Time-domain one"
        ) from None
    repeats = int(group[SynchParam.Repeats])
    delay = group.get(SynchParam.Delay, {}).get(SynchDomain.Position)
    if spacing == 0 or not math.isfinite(spacing):
        raise ValueError(f"the PSO needs a non-zero spacing between triggers, got {spacing}")
    if repeats < 1:
        raise ValueError(f"the PSO needs at least one trigger, got Repeats={repeats}")
    return PsoPlan(first, spacing, repeats, None if delay is None else first - float(delay))


class _PsoAxis:
    """One trigger/gate axis: an axis device and the PSO of its controller."""

    def __init__(self, axis_device: str) -> None:
        self.axis = DeviceLink(axis_device)
        self._controller: DeviceLink | None = None
        self._pso_axis: str | None = None
        self.plan: PsoPlan | None = None
        self.started = False

    def _property(self, name: str) -> str:
        values = self.axis.proxy.get_property(name)[name]
        if not values:
            raise ValueError(f"{self.axis.name} has no '{name}' device property")
        return values[0]

    @property
    def controller(self) -> DeviceLink:
        if self._controller is None:
            self._controller = DeviceLink(self._property("controller"))
        return self._controller

    @property
    def pso_axis(self) -> str:
        if self._pso_axis is None:
            self._pso_axis = self._property("axis")
        return self._pso_axis

    def configure(self, plan: PsoPlan) -> None:
        ctrl = self.controller
        if ctrl.read("pso_armed"):
            ctrl.command("PsoDisarm")
        ctrl.write("pso_axis", self.pso_axis)
        ctrl.write("pso_distance", plan.distance)
        low, high = plan.window
        # The controller refuses low > high at every write: write first the bound that keeps them ordered.
        writes = [("pso_window_low", low), ("pso_window_high", high)]
        if low > ctrl.read("pso_window_high"):
            writes.reverse()
        for name, value in writes:
            ctrl.write(name, value)
        self.plan = plan

    def align(self) -> None:
        """Bring the axis to the arm position of the plan (it is at rest before the scan's motion)."""
        assert self.plan is not None
        current = self.axis.read("position")
        self.plan.check_at_pre_start(self.axis.name, current)
        target = self.plan.arm_position(current)
        if abs(target - current) <= ALIGN_TOLERANCE * self.plan.distance:
            return
        self.axis.write("position", target)
        deadline = time.monotonic() + ALIGN_TIMEOUT
        while time.monotonic() < deadline:
            if self.axis.state() != tango.DevState.MOVING and self.axis.read("at_target"):
                return
            time.sleep(ALIGN_POLL)
        raise TimeoutError(f"{self.axis.name} did not reach the PSO arm position {target:g} in {ALIGN_TIMEOUT:g} s")

    def start(self) -> None:
        self.align()
        self.controller.command("PsoArm")
        self.started = True

    def stop(self) -> None:
        self.started = False
        if self._controller is not None and self.controller.read("pso_armed"):
            self.controller.command("PsoDisarm")

    def state(self) -> tuple[int, str]:
        if not self.started or self.plan is None:
            return State.On, f"PSO on {self.axis.name}: idle"
        armed, count = (a.value for a in self.controller.proxy.read_attributes(["pso_armed", "pso_pulse_count"]))
        if armed and count < self.plan.repeats:
            return State.Moving, f"PSO on {self.axis.name}: {count} of {self.plan.repeats} pulses"
        self.stop()
        if count < self.plan.repeats:
            return State.Alarm, f"PSO on {self.axis.name} disarmed after {count} of {self.plan.repeats} pulses"
        return State.On, f"PSO on {self.axis.name}: {count} pulses fired"


class Automation1PsoTriggerGateController(TriggerGateController):
    """The PSO of our Automation1 controller, one trigger/gate axis per motion axis."""

    gender = "TriggerGate"
    model = "Automation1 PSO"
    organization = "tango-bluesky-suite"
    MaxDevice = 64

    ctrl_properties = {
        "Devices": {
            Type: (str,),
            Description: "Tango device of each axis whose travel fires the PSO, axis 1 first (e.g. sim/aerotech/x)",
            DefaultValue: [],
        },
    }

    def __init__(self, inst, props, *args, **kwargs):
        TriggerGateController.__init__(self, inst, props, *args, **kwargs)
        self._axes: dict[int, _PsoAxis] = {}

    def AddDevice(self, axis):
        self._axes[axis] = _PsoAxis(axis_device(self.Devices, axis))

    def DeleteDevice(self, axis):
        self._axes.pop(axis, None)

    def StateOne(self, axis):
        pso = self._axes[axis]
        try:
            return pso.state()
        except Exception as exc:
            return State.Fault, f"PSO on {pso.axis.name} does not answer: {error_description(exc)}"

    def SynchOne(self, axis, description):
        self._axes[axis].configure(pso_plan(description))

    def PreStartOne(self, axis, value=None):
        return True

    def StartOne(self, axis):
        self._axes[axis].start()

    def AbortOne(self, axis):
        self._axes[axis].stop()

    def StopOne(self, axis):
        self.AbortOne(axis)
