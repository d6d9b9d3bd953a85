"""The narrow interface an Automation1 motion controller driver implements (no Tango import).

The Tango devices in `device.py` only talk to an `Automation1Backend`: the simulator in
`sim.py` today, a driver around Aerotech's Automation1 Python API on real hardware. Reads
return immutable snapshots; commands validate their input and raise `MotionError` (nothing
moves) or act; everything that changes is also announced to listeners as events, delivered
in order from the backend's own worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class MotionError(Exception):
    """A rejected command: `reason` is a short CamelCase code, the message a sentence for the user."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class AxisState(enum.Enum):
    """Mirrors the Tango states the axis device reports."""

    DISABLE = "DISABLE"
    STANDBY = "STANDBY"
    MOVING = "MOVING"
    FAULT = "FAULT"
    ALARM = "ALARM"  # idle on (or beyond) a soft limit


class TaskState(enum.IntEnum):
    """State of the program task; the values are the Tango enum indices of `task_state`."""

    Idle = 0
    Running = 1
    Error = 2
    Complete = 3


@dataclass(frozen=True, slots=True)
class AxisConfig:
    """Static description of one axis: its name on the controller, units and hardware limits."""

    name: str
    units: str = "mm"
    velocity: float = 5.0  # default move speed, units/s
    max_velocity: float = 50.0
    acceleration: float = 100.0  # units/s^2, used for both ramps of a move
    max_acceleration: float = 10000.0
    abort_deceleration: float = 1000.0  # units/s^2, used by Stop on a fault and AbortProgram
    soft_limit_low: float = -50.0
    soft_limit_high: float = 50.0
    home_position: float = 0.0
    encoder_resolution: float = 1e-6  # units per encoder count: the finest PSO distance

    @classmethod
    def from_spec(cls, spec: str) -> AxisConfig:
        """Parse "NAME UNITS key=value ..." (e.g. "OMEGA deg velocity=30 soft_limit_high=720").

        Angular axes (units deg) get rotary defaults; any field above can be given as key=value.
        """
        words = spec.split()
        if not words:
            raise ValueError("empty axis specification")
        name, units = words[0], (words[1] if len(words) > 1 and "=" not in words[1] else "mm")
        values: dict[str, float] = dict(_ROTARY_DEFAULTS) if units == "deg" else {}
        for word in words[1:]:
            if "=" not in word:
                continue
            key, _, text = word.partition("=")
            if key not in cls.__dataclass_fields__ or key in ("name", "units"):
                raise ValueError(f"unknown axis setting '{key}' in '{spec}'")
            values[key] = float(text)
        return cls(name=name, units=units, **values)


_ROTARY_DEFAULTS = {
    "velocity": 30.0,
    "max_velocity": 720.0,
    "acceleration": 720.0,
    "max_acceleration": 36000.0,
    "abort_deceleration": 7200.0,
    "soft_limit_low": -3600.0,
    "soft_limit_high": 3600.0,
}


@dataclass(frozen=True, slots=True)
class AxisStatus:
    """A consistent snapshot of one axis at simulated time `timestamp` (seconds since the epoch)."""

    axis: str
    timestamp: float
    position: float
    target: float
    actual_velocity: float
    velocity: float
    acceleration: float
    soft_limit_low: float
    soft_limit_high: float
    enabled: bool
    homed: bool
    moving: bool
    faults: tuple[str, ...]
    move_progress: float  # elapsed / planned duration of the current move, 1.0 at rest
    message: str  # one line for the Tango Status

    @property
    def at_target(self) -> bool:
        return not self.moving and abs(self.position - self.target) <= 1e-9 * max(1.0, abs(self.target))

    @property
    def on_limit(self) -> bool:
        tol = 1e-9 * max(1.0, abs(self.position))
        return self.position <= self.soft_limit_low + tol or self.position >= self.soft_limit_high - tol

    @property
    def state(self) -> AxisState:
        if self.faults:
            return AxisState.FAULT
        if self.moving:
            return AxisState.MOVING
        if not self.enabled:
            return AxisState.DISABLE
        if self.on_limit:
            return AxisState.ALARM
        return AxisState.STANDBY


@dataclass(frozen=True, slots=True)
class PsoStatus:
    """Position-synchronised output settings and counters."""

    axis: str
    distance: float
    window_low: float
    window_high: float
    armed: bool
    pulse_count: int
    captured_count: int


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """The program task: state, progress 0..1, the line being executed and a message."""

    state: TaskState
    progress: float
    line: int
    message: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class CapturedData:
    """Positions latched at each PSO pulse: `timestamps[i]` and `positions[axis][i]` for pulse i+1."""

    timestamps: np.ndarray
    positions: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.timestamps)


# Events, delivered to listeners in the order they happened, from the backend's worker thread.


@dataclass(frozen=True, slots=True)
class AxisEvent:
    status: AxisStatus


@dataclass(frozen=True, slots=True)
class PulseEvent:
    """PSO pulses number `first`, `first + 1`, ... fired at `timestamps` (one entry per pulse,
    at most `limits.MAX_PULSES_PER_EVENT`)."""

    first: int
    timestamps: Sequence[float]


@dataclass(frozen=True, slots=True)
class PsoEvent:
    """PSO settings, armed state or counters changed (not sent for each pulse)."""

    status: PsoStatus
    capture_changed: bool  # the captured arrays changed since the last PsoEvent


@dataclass(frozen=True, slots=True)
class TaskEvent:
    status: TaskStatus


BackendEvent = AxisEvent | PulseEvent | PsoEvent | TaskEvent
Listener = Callable[[BackendEvent], None]


@runtime_checkable
class Automation1Backend(Protocol):
    """What the Tango devices need from a controller. Units are the axis units (mm, deg) and seconds."""

    @property
    def axes(self) -> tuple[AxisConfig, ...]: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    def close(self) -> None: ...

    def flush(self) -> None:
        """Save what must survive a restart (the simulator: axis positions); hardware: nothing."""

    # Axes
    def axis_status(self, axis: str) -> AxisStatus: ...

    def move_absolute(self, axis: str, target: float, velocity: float | None = None) -> AxisStatus: ...

    def move_relative(self, axis: str, distance: float, velocity: float | None = None) -> AxisStatus: ...

    def stop(self, axis: str) -> AxisStatus: ...

    def enable(self, axis: str) -> AxisStatus: ...

    def disable(self, axis: str) -> AxisStatus: ...

    def home(self, axis: str) -> AxisStatus: ...

    def fault_ack(self, axis: str) -> AxisStatus: ...

    def set_velocity(self, axis: str, velocity: float) -> AxisStatus: ...

    def set_acceleration(self, axis: str, acceleration: float) -> AxisStatus: ...

    def set_soft_limits(self, axis: str, low: float, high: float) -> AxisStatus: ...

    # Position-synchronised output and data capture
    def pso_status(self) -> PsoStatus: ...

    def pso_configure(
        self,
        *,
        axis: str | None = None,
        distance: float | None = None,
        window_low: float | None = None,
        window_high: float | None = None,
    ) -> PsoStatus: ...

    def pso_arm(self) -> PsoStatus: ...

    def pso_disarm(self) -> PsoStatus: ...

    def captured(self) -> CapturedData: ...

    # Programs (one task)
    def task_status(self) -> TaskStatus: ...

    def run_program(self, text: str) -> TaskStatus: ...

    def abort_program(self) -> TaskStatus: ...


BACKENDS = ("sim",)


def make_backend(
    kind: str, axes: Sequence[AxisConfig], *, state_file: Path, time_scale: float, capture_capacity: int
) -> Automation1Backend:
    """The backend named by the controller's `backend` property. Raises ValueError for an unknown
    kind (naming the ones this server provides) or bad simulator settings."""
    if kind != "sim":
        raise ValueError(f"unknown backend '{kind}'; this server provides: {', '.join(BACKENDS)}")
    from .sim import Automation1Sim, SimClock  # the simulator implements this module's Protocol

    return Automation1Sim(axes, state_file=state_file, clock=SimClock(time_scale), capture_capacity=capture_capacity)
