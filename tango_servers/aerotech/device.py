"""Tango devices of the Automation1 server: a thin mapping of attributes and commands onto an
`Automation1Backend` (the simulator unless the `backend` property says otherwise).

One backend (one worker thread) per controller device; the axis devices of the same server
find it through their `controller` property. Changes reach clients as change events pushed from
one publisher thread per controller (`tango_servers.common.EventPublisher`), in the order the
backend reported them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tango
from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, class_property, command, device_property, run

from ophyd_tango.core.errors import error_description

from ..common import EventPublisher, publish_roles, refusals, refuse
from .backend import (
    BACKENDS,
    Automation1Backend,
    AxisConfig,
    AxisEvent,
    AxisState,
    AxisStatus,
    BackendEvent,
    MotionError,
    PsoEvent,
    PsoStatus,
    PulseEvent,
    TaskEvent,
    TaskState,
    make_backend,
)
from .sim import DEFAULT_AXES

log = logging.getLogger(__name__)

STATE_DIR_ENV = "TANGO_SUITE_STATE_DIR"
_AXIS_STATES = {
    AxisState.DISABLE: DevState.DISABLE,
    AxisState.STANDBY: DevState.STANDBY,
    AxisState.MOVING: DevState.MOVING,
    AxisState.FAULT: DevState.FAULT,
    AxisState.ALARM: DevState.ALARM,
}

_backends: dict[str, Automation1Backend] = {}
# One per backend, shared by its devices: events leave in the order the backend reported them.
_publishers: dict[str, EventPublisher[tuple[_BackendDevice, BackendEvent]]] = {}
_backends_lock = threading.Lock()


@atexit.register
def _close_backends() -> None:
    """Stop the worker threads (saving the axis positions) before the interpreter goes away."""
    with _backends_lock:
        backends = list(_backends.values())
    for backend in backends:
        backend.close()


def _axis_spec(config: AxisConfig) -> str:
    return f"{config.name} {config.units}"


def _state_file(controller: str, state_dir: str) -> Path:
    """Where the simulator saves axis positions: `state_dir`, else $TANGO_SUITE_STATE_DIR/aerotech,
    else a directory in the system temp dir."""
    if state_dir:
        root = Path(state_dir)
    elif os.environ.get(STATE_DIR_ENV):
        root = Path(os.environ[STATE_DIR_ENV]) / "aerotech"
    else:
        root = Path(tempfile.gettempdir()) / "tango-suite-aerotech"
    return root / f"{controller.replace('/', '_')}.json"


def _backend(controller: str) -> Automation1Backend | None:
    with _backends_lock:
        return _backends.get(controller.lower())


def _push(item: tuple[_BackendDevice, BackendEvent]) -> None:
    device, event = item
    device.push_event(event)


def _as_devfailed(origin: str) -> contextlib.AbstractContextManager[None]:
    """A backend rejection as a DevFailed carrying its reason and sentence."""
    return refusals(origin, MotionError)


def _memorize(device: Device, attribute: str, value: object, undo: Callable[[], object]) -> None:
    """Store a memorized value now, so a write succeeds whole or changes nothing: when the database
    cannot store it (a full disk), `undo` puts the previous value back and the write fails."""
    try:
        tango.Util.instance().get_database().put_device_attribute_property(
            device.get_name(), {attribute: {"__value": [str(value)]}}
        )
    except tango.DevFailed as exc:
        undo()
        refuse(
            "MemorizeFailed",
            f"{device.get_name()}/{attribute}: the database cannot store {value!r} ({error_description(exc)}); "
            "nothing changed.",
            f"{type(device).__name__}.{attribute}",
        )


class _BackendDevice(Device):
    """A device driven by an Automation1Backend; FAULT with a readable status when misconfigured."""

    _backend_or_none: Automation1Backend | None = None
    _problem: str | None = None
    _alive = False

    @property
    def _backend(self) -> Automation1Backend:
        if self._backend_or_none is None:
            refuse("NotConfigured", self._problem or "device not initialised", self.get_name())
        return self._backend_or_none

    def _attach(self, controller: str) -> None:
        with _backends_lock:
            backend, self._publisher = _backends[controller.lower()], _publishers[controller.lower()]
        self._backend_or_none, self._problem, self._alive = backend, None, True
        backend.add_listener(self._deliver)

    def _fail(self, problem: str) -> None:
        log.error("%s: %s", self.get_name(), problem)
        self._backend_or_none, self._problem = None, problem
        self.set_state(DevState.FAULT)
        self.set_status(problem)

    def _deliver(self, event: BackendEvent) -> None:
        """Listener on the backend's worker thread: hand the event to the publisher thread."""
        self._publisher.offer((self, event))

    def push_event(self, event: BackendEvent) -> None:
        """Push the change events of one backend event (the publisher thread)."""
        if self._alive:  # no pushes once delete_device ran (Init, server shutdown)
            self._on_event(event)

    def _on_event(self, event: BackendEvent) -> None:
        raise NotImplementedError

    def delete_device(self) -> None:
        self._alive = False
        if self._backend_or_none is not None:
            self._backend_or_none.remove_listener(self._deliver)


class Automation1Controller(_BackendDevice):
    """An Aerotech Automation1 motion controller: PSO, data capture and the program task.

    PSO: a pulse every `pso_distance` of travel of `pso_axis` (pulse positions p0 + k * distance
    from the arm position p0, k != 0, either direction, only inside [pso_window_low,
    pso_window_high], bounds included; the arm position itself never pulses, so arming at 0 and
    moving to 10 at distance 0.01 gives exactly 1000 pulses). `pso_pulse_count` is the simulated
    TTL line: PsoArm resets it to 0 and pushes that value, then every pulse pushes one change
    event with the new count (1, 2, 3, ...), stamped with the exact pulse time.

    Data capture: at each pulse the positions of all axes and the time are latched. They are read
    as one spectrum per axis, `captured_positions_<axis>` (e.g. `captured_positions_x`, in the
    axis units) and `captured_timestamps` (seconds since the epoch); element i belongs to pulse
    i + 1. `captured_count` pushes change events as pulses arrive (at most once per simulation
    step); the spectra push change events at most twice a second while pulses arrive and once
    when they pause or PSO is disarmed. PsoArm clears them.

    Programs: `RunProgram(text)` checks a small AeroScript-like program (syntax, then a dry run
    against the soft limits; a rejected program names its line and nothing moves) and runs it.
    `task_state` (Idle, Running, Error, Complete), `task_line`, `task_message` and `task_progress`
    push change events. Progress for a progress bar: value = `task_progress`, max = 1, done =
    `task_state` is not Running. `AbortProgram` stops the task and its axes (abort deceleration).

    State: RUNNING while a program runs, FAULT when an axis is faulted, MOVING while an axis
    moves, ALARM after a program error, ON otherwise.
    """

    backend = device_property(dtype=str, default_value="sim", doc="Which backend drives the controller: sim")
    axes = device_property(
        dtype=(str,),
        default_value=[_axis_spec(a) for a in DEFAULT_AXES],
        doc='Axes of the simulated controller, "NAME UNITS [key=value ...]" (see AxisConfig)',
    )
    state_dir = device_property(
        dtype=str, default_value="", doc=f"Where axis positions are saved; default ${STATE_DIR_ENV}/aerotech"
    )
    time_scale = device_property(dtype=float, default_value=1.0, doc="Simulated seconds per wall-clock second")
    capture_capacity = device_property(dtype=int, default_value=1_000_000, doc="Maximum number of pulses captured")
    bluesky_roles = class_property(
        dtype=(str,),
        default_value=[
            "kind=controller",
            "configuration=pso_axis,pso_distance,pso_window_low,pso_window_high",
            "pulse_counter=pso_pulse_count",
            "capture_count=captured_count",
            "capture=captured_timestamps,captured_positions_*",
            "progress=task_progress",
            "task_state=task_state",
            "task_message=task_message",
            "pso_armed=pso_armed",
            "pso_axis=pso_axis",
            "pso_distance=pso_distance",
            "pso_window_low=pso_window_low",
            "pso_window_high=pso_window_high",
            "pso_arm=PsoArm",
            "pso_disarm=PsoDisarm",
            "run_program=RunProgram",
            "abort_program=AbortProgram",
        ],
    )

    def init_device(self) -> None:
        super().init_device()
        self._name = self.get_name().lower()
        self._axis_states: dict[str, AxisState] = {}
        self._pushed_state: DevState | None = None
        self._pushed_pso: PsoStatus | None = None
        self._backend_time: float | None = None  # newest backend timestamp seen (the simulated clock)
        try:
            self._ensure_backend()
        except (ValueError, OSError) as exc:
            self._fail(f"cannot start the controller: {exc}")
            return
        for name in (
            "State",
            "Status",
            "pso_axis",
            "pso_distance",
            "pso_window_low",
            "pso_window_high",
            "pso_armed",
            "pso_pulse_count",
            "captured_count",
            "captured_timestamps",
            "task_state",
            "task_progress",
            "task_line",
            "task_message",
        ):
            self.set_change_event(name, True, False)
        self._attach(self._name)
        publish_roles(self)

    def _ensure_backend(self) -> None:
        with _backends_lock:
            if self._name in _backends and self.backend in BACKENDS:  # Init command: keep the running simulation
                return
            backend = make_backend(
                self.backend,
                [AxisConfig.from_spec(spec) for spec in self.axes],
                state_file=_state_file(self._name, self.state_dir),
                time_scale=self.time_scale,
                capture_capacity=self.capture_capacity,
            )
            _backends[self._name] = backend
            _publishers[self._name] = EventPublisher(f"automation1-events:{self._name}", _push)

    def initialize_dynamic_attributes(self) -> None:
        if self._backend_or_none is None:
            return
        for config in self._backend.axes:
            name = f"captured_positions_{config.name.lower()}"
            attr = tango.SpectrumAttr(name, tango.DevDouble, tango.READ, self.capture_capacity)
            props = tango.UserDefaultAttrProp()
            props.set_unit(config.units)
            props.set_format("%.6f")
            props.set_description(f"Position of axis {config.name} latched at each PSO pulse (element i: pulse i + 1)")
            attr.set_default_properties(props)
            self.add_attribute(attr, r_meth=self.read_captured_positions)
            self.set_change_event(name, True, False)

    def delete_device(self) -> None:
        super().delete_device()
        if self._backend_or_none is not None:
            self._backend_or_none.flush()  # server shutdown or Init: save the axis positions now

    # State

    def dev_state(self) -> DevState:
        if self._problem:
            return DevState.FAULT
        return self._state(self._backend.task_status().state, [s.state for s in self._axis_statuses()])

    def dev_status(self) -> str:
        if self._problem:
            return self._problem
        task = self._backend.task_status()
        moving = [s.axis for s in self._axis_statuses() if s.moving]
        faulted = [s.axis for s in self._axis_statuses() if s.faults]
        parts = [f"Task {task.state.name}" + (f": {task.message}" if task.message else "")]
        if moving:
            parts.append(f"moving: {', '.join(moving)}")
        if faulted:
            parts.append(f"faulted: {', '.join(faulted)}")
        return "; ".join(parts)

    def _axis_statuses(self) -> list[AxisStatus]:
        return [self._backend.axis_status(a.name) for a in self._backend.axes]

    @staticmethod
    def _state(task: TaskState, axes: list[AxisState]) -> DevState:
        if task is TaskState.Running:
            return DevState.RUNNING
        if AxisState.FAULT in axes:
            return DevState.FAULT
        if AxisState.MOVING in axes:
            return DevState.MOVING
        if task is TaskState.Error:
            return DevState.ALARM
        return DevState.ON

    # Events from the backend thread

    def _on_event(self, event: BackendEvent) -> None:
        self._note_time(event)
        if isinstance(event, PulseEvent):
            push = self.push_change_event
            for i, stamp in enumerate(event.timestamps):
                push("pso_pulse_count", event.first + i, stamp, AttrQuality.ATTR_VALID)
        elif isinstance(event, PsoEvent):
            self._push_pso(event)
        elif isinstance(event, TaskEvent):
            s = event.status
            self.push_change_event("task_state", int(s.state), s.timestamp, AttrQuality.ATTR_VALID)
            self.push_change_event("task_progress", s.progress, s.timestamp, AttrQuality.ATTR_VALID)
            self.push_change_event("task_line", s.line, s.timestamp, AttrQuality.ATTR_VALID)
            self.push_change_event("task_message", s.message, s.timestamp, AttrQuality.ATTR_VALID)
            self._push_state(s.state)
        elif isinstance(event, AxisEvent):
            self._axis_states[event.status.axis] = event.status.state
            self._push_state(None)

    def _note_time(self, event: BackendEvent) -> None:
        if isinstance(event, PulseEvent):
            stamp = event.timestamps[-1] if event.timestamps else None
        elif isinstance(event, TaskEvent | AxisEvent):
            stamp = event.status.timestamp
        else:
            stamp = None
        if stamp is not None and (self._backend_time is None or stamp > self._backend_time):
            self._backend_time = stamp

    def _push_state(self, task: TaskState | None) -> None:
        task = task if task is not None else self._backend.task_status().state
        state = self._state(task, list(self._axis_states.values()))
        if state != self._pushed_state:
            self._pushed_state = state
            self.set_state(state)
            self.push_change_event("State")
            self.set_status(self.dev_status())
            self.push_change_event("Status")

    def _push_pso(self, event: PsoEvent) -> None:
        s, previous = event.status, self._pushed_pso
        self._pushed_pso = s
        for name, value in (
            ("pso_axis", s.axis),
            ("pso_distance", s.distance),
            ("pso_window_low", s.window_low),
            ("pso_window_high", s.window_high),
            ("pso_armed", s.armed),
            ("captured_count", s.captured_count),
        ):
            changed = previous is None or getattr(previous, name.removeprefix("pso_"), None) != value
            if changed or name == "captured_count":
                self.push_change_event(name, value)
        if s.pulse_count == 0 and (previous is None or previous.pulse_count or previous.armed != s.armed):
            # PsoArm reset the counter. Stamped on the backend's clock, as the pulses are: a follower
            # that drops updates older than the last one must not drop the pulses after the reset.
            if self._backend_time is None:
                self.push_change_event("pso_pulse_count", 0)
            else:
                self.push_change_event("pso_pulse_count", 0, self._backend_time, AttrQuality.ATTR_VALID)
        if event.capture_changed:
            data = self._backend.captured()
            self.push_change_event("captured_timestamps", data.timestamps)
            for axis, values in data.positions.items():
                self.push_change_event(f"captured_positions_{axis.lower()}", values)

    # PSO

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        doc="Axis whose travel fires the PSO pulses (X, Y, Z or OMEGA)",
    )
    def pso_axis(self) -> str:
        return self._backend.pso_status().axis

    @pso_axis.write
    def pso_axis(self, value: str) -> None:
        before = self._backend.pso_status().axis
        with _as_devfailed("Automation1Controller.pso_axis"):
            self._backend.pso_configure(axis=value)
        _memorize(self, "pso_axis", value, lambda: self._backend.pso_configure(axis=before))

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        format="%.6f",
        min_value=0.0,
        doc="A PSO pulse every this much travel of pso_axis (in its units); > 0",
    )
    def pso_distance(self) -> float:
        return self._backend.pso_status().distance

    @pso_distance.write
    def pso_distance(self, value: float) -> None:
        before = self._backend.pso_status().distance
        with _as_devfailed("Automation1Controller.pso_distance"):
            self._backend.pso_configure(distance=value)
        _memorize(self, "pso_distance", value, lambda: self._backend.pso_configure(distance=before))

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        format="%.6f",
        doc="PSO pulses fire only at positions >= this (pso_axis units; inclusive)",
    )
    def pso_window_low(self) -> float:
        return self._backend.pso_status().window_low

    @pso_window_low.write
    def pso_window_low(self, value: float) -> None:
        with _as_devfailed("Automation1Controller.pso_window_low"):
            self._backend.pso_configure(window_low=value)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        format="%.6f",
        doc="PSO pulses fire only at positions <= this (pso_axis units; inclusive)",
    )
    def pso_window_high(self) -> float:
        return self._backend.pso_status().window_high

    @pso_window_high.write
    def pso_window_high(self, value: float) -> None:
        with _as_devfailed("Automation1Controller.pso_window_high"):
            self._backend.pso_configure(window_high=value)

    @attribute(dtype=bool, doc="True while PSO is armed")
    def pso_armed(self) -> bool:
        return self._backend.pso_status().armed

    @attribute(
        dtype=tango.DevLong64,  # a real controller counts past 2**31 in a long fly
        doc="Pulses since PsoArm; one change event per pulse (the simulated TTL line)",
    )
    def pso_pulse_count(self) -> tuple[int, float, AttrQuality]:
        # On the backend's clock, as the pulse events are, so that a reading never looks newer than
        # the pulses that follow it (time_scale != 1: that clock is not the wall clock).
        stamp = self._backend_time if self._backend_time is not None else time.time()
        return self._backend.pso_status().pulse_count, stamp, AttrQuality.ATTR_VALID

    @command(doc_in="Arm PSO at the current position of pso_axis; resets pso_pulse_count and the captured data")
    def PsoArm(self) -> None:
        with _as_devfailed("Automation1Controller.PsoArm"):
            self._backend.pso_arm()

    @command(doc_in="Disarm PSO; the captured data stay readable")
    def PsoDisarm(self) -> None:
        with _as_devfailed("Automation1Controller.PsoDisarm"):
            self._backend.pso_disarm()

    # Data capture

    @attribute(dtype=tango.DevLong, doc="Number of position sets captured since PsoArm")
    def captured_count(self) -> int:
        return self._backend.pso_status().captured_count

    @attribute(
        dtype=(float,),
        max_dim_x=1_000_000,
        unit="s",
        format="%.6f",
        doc="Time of each captured pulse, seconds since the epoch (element i: pulse i + 1)",
    )
    def captured_timestamps(self) -> np.ndarray:
        return self._backend.captured().timestamps

    def read_captured_positions(self, attr: tango.Attribute) -> None:
        axis = attr.get_name().removeprefix("captured_positions_")
        positions = self._backend.captured().positions
        attr.set_value(next(v for k, v in positions.items() if k.lower() == axis))

    # Programs

    @attribute(dtype=tango.DevEnum, enum_labels=[s.name for s in TaskState], doc="State of the program task")
    def task_state(self) -> int:
        return int(self._backend.task_status().state)

    @attribute(
        dtype=float,
        min_value=0.0,
        max_value=1.0,
        format="%.3f",
        doc="Progress of the program, 0..1 (planned time elapsed); 1 when Complete",
    )
    def task_progress(self) -> float:
        return self._backend.task_status().progress

    @attribute(dtype=tango.DevLong, doc="Line of the program being executed (or where it stopped)")
    def task_line(self) -> int:
        return self._backend.task_status().line

    @attribute(dtype=str, doc="What the task is doing, or why it stopped (with the line number)")
    def task_message(self) -> str:
        return self._backend.task_status().message

    @command(
        dtype_in=str,
        doc_in="AeroScript-like program: MoveAbsolute, MoveIncremental, MoveLinear, Dwell, WaitForInPosition, "
        "Enable, Disable, Home, PsoDistance, PsoWindow, PsoArm, PsoDisarm, var $x = ..., for/repeat ... end "
        "(docs/aerotech.md). Checked completely (syntax, soft limits) before anything moves",
    )
    def RunProgram(self, text: str) -> None:
        with _as_devfailed("Automation1Controller.RunProgram"):
            self._backend.run_program(text)

    @command(doc_in="Stop the program and the axes it moves")
    def AbortProgram(self) -> None:
        with _as_devfailed("Automation1Controller.AbortProgram"):
            self._backend.abort_program()


class Automation1Axis(_BackendDevice):
    """One axis of an Automation1 controller served by the same process.

    Moves: writing `position` starts an absolute move (trapezoidal profile at `velocity` with
    ramps at `acceleration`); reading it gives the live readback, quality CHANGING while moving,
    with change events at least 50 Hz while moving and a final event at rest. The move has ended
    when State leaves MOVING. `position` min/max follow the soft limits.

    Progress of a move for a progress bar: value = `move_progress` (planned time elapsed, 0..1),
    max = 1, done = State is not MOVING.

    States: DISABLE (disabled), STANDBY (enabled, idle), MOVING, FAULT (acknowledge with
    FaultAck), ALARM (idle on or beyond a soft limit). Moves outside the soft limits, NaN, moves
    while disabled or faulted are rejected with a DevFailed naming the limit or the reason, and
    nothing moves.
    """

    controller = device_property(dtype=str, default_value="sim/aerotech/ctrl", doc="The controller device")
    axis = device_property(dtype=str, default_value="X", doc="Axis name on the controller")
    bluesky_roles = class_property(
        dtype=(str,),
        default_value=[
            "kind=motor",
            "readback=position",
            "setpoint=position",
            "setpoint_readback=position_target",
            "moving_state=MOVING",
            "hinted=position",
            "configuration=velocity,acceleration,soft_limit_low,soft_limit_high",
            "progress=move_progress",
            "stop=Stop",
        ],
    )

    def init_device(self) -> None:
        super().init_device()
        self._axis = self.axis.upper()
        self._last: AxisStatus | None = None
        backend = _backend(self.controller)
        if backend is None:
            self._fail(
                f"controller {self.controller} is not served by this process; run axis and controller devices "
                "in the same Automation1 server"
            )
            return
        config = next((a for a in backend.axes if a.name.upper() == self._axis), None)
        if config is None:
            names = ", ".join(a.name for a in backend.axes)
            self._fail(f"controller {self.controller} has no axis {self.axis}; its axes are {names}")
            return
        self._config = config
        for name in (*self._EVENT_ATTRIBUTES, "State", "Status"):
            self.set_change_event(name, True, False)
        self._declare_units(config)
        self._update_position_limits(backend.axis_status(self._axis))
        self._attach(self.controller)
        publish_roles(self)

    _EVENT_ATTRIBUTES = (
        "position",
        "position_target",
        "actual_velocity",
        "velocity",
        "acceleration",
        "soft_limit_low",
        "soft_limit_high",
        "enabled",
        "homed",
        "at_target",
        "faults",
        "move_progress",
    )

    def _declare_units(self, config: AxisConfig) -> None:
        units = config.units
        per = {
            "position": units,
            "position_target": units,
            "soft_limit_low": units,
            "soft_limit_high": units,
            "velocity": f"{units}/s",
            "actual_velocity": f"{units}/s",
            "acceleration": f"{units}/s^2",
        }
        attrs = self.get_device_attr()
        for name, unit in per.items():
            attr = attrs.get_attr_by_name(name)
            props = attr.get_properties()
            props.unit = unit
            if name == "velocity":
                props.max_value = repr(config.max_velocity)
            if name == "acceleration":
                props.max_value = repr(config.max_acceleration)
            attr.set_properties(props)

    def _update_position_limits(self, status: AxisStatus) -> None:
        attr = self.get_device_attr().get_attr_by_name("position")
        props = attr.get_properties()
        props.min_value = repr(status.soft_limit_low)
        props.max_value = repr(status.soft_limit_high)
        attr.set_properties(props)

    def dev_state(self) -> DevState:
        if self._problem:
            return DevState.FAULT
        return _AXIS_STATES[self._backend.axis_status(self._axis).state]

    def dev_status(self) -> str:
        if self._problem:
            return self._problem
        s = self._backend.axis_status(self._axis)
        text = f"Axis {s.axis} {s.state.value} at {s.position:.4f} {self._config.units}"
        return f"{text}: {s.message}" if s.message else text

    # Events from the backend thread

    def _on_event(self, event: BackendEvent) -> None:
        if not isinstance(event, AxisEvent) or event.status.axis != self._axis:
            return
        s, previous = event.status, self._last
        self._last = s
        stamp, valid = s.timestamp, AttrQuality.ATTR_VALID
        quality = AttrQuality.ATTR_CHANGING if s.moving else valid
        push = self.push_change_event
        push("position", s.position, stamp, quality)
        if s.moving or previous is None or previous.moving:
            push("actual_velocity", s.actual_velocity, stamp, valid)
            push("move_progress", s.move_progress, stamp, valid)
        values = _event_values(s)
        previous_values = _event_values(previous) if previous is not None else {}
        for name, value in values.items():
            if previous_values.get(name) != value:
                push(name, value, stamp, valid)
        if previous is None or previous.state != s.state:
            self.set_state(_AXIS_STATES[s.state])
            push("State")
        if previous is None or previous.state != s.state or previous.message != s.message:
            text = f"Axis {s.axis} {s.state.value} at {s.position:.4f} {self._config.units}"
            self.set_status(f"{text}: {s.message}" if s.message else text)
            push("Status")

    # Attributes

    def _status(self) -> AxisStatus:
        return self._backend.axis_status(self._axis)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        format="%.4f",
        doc="Live position readback; writing starts an absolute move (min/max = soft limits)",
    )
    def position(self) -> tuple[float, float, AttrQuality]:
        s = self._status()
        return s.position, s.timestamp, AttrQuality.ATTR_CHANGING if s.moving else AttrQuality.ATTR_VALID

    @position.write
    def position(self, value: float) -> None:
        with _as_devfailed("Automation1Axis.position"):
            self._backend.move_absolute(self._axis, value)

    @attribute(dtype=float, format="%.4f", doc="Target of the current or last move (where a Stop ended it)")
    def position_target(self) -> float:
        return self._status().target

    @attribute(dtype=float, format="%.4f", doc="Velocity right now")
    def actual_velocity(self) -> float:
        return self._status().actual_velocity

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        format="%.4f",
        min_value=0.0,
        doc="Cruise speed of moves (> 0, at most the axis maximum velocity)",
    )
    def velocity(self) -> float:
        return self._status().velocity

    @velocity.write
    def velocity(self, value: float) -> None:
        before = self._status().velocity
        with _as_devfailed("Automation1Axis.velocity"):
            self._backend.set_velocity(self._axis, value)
        _memorize(self, "velocity", value, lambda: self._backend.set_velocity(self._axis, before))

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        format="%.2f",
        min_value=0.0,
        doc="Acceleration and deceleration of the ramps of a move (> 0)",
    )
    def acceleration(self) -> float:
        return self._status().acceleration

    @acceleration.write
    def acceleration(self, value: float) -> None:
        before = self._status().acceleration
        with _as_devfailed("Automation1Axis.acceleration"):
            self._backend.set_acceleration(self._axis, value)
        _memorize(self, "acceleration", value, lambda: self._backend.set_acceleration(self._axis, before))

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        format="%.4f",
        doc="Lowest target a move may have; also the min_value of position",
    )
    def soft_limit_low(self) -> float:
        return self._status().soft_limit_low

    @soft_limit_low.write
    def soft_limit_low(self, value: float) -> None:
        with _as_devfailed("Automation1Axis.soft_limit_low"):
            status = self._backend.set_soft_limits(self._axis, value, self._status().soft_limit_high)
        self._update_position_limits(status)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        format="%.4f",
        doc="Highest target a move may have; also the max_value of position",
    )
    def soft_limit_high(self) -> float:
        return self._status().soft_limit_high

    @soft_limit_high.write
    def soft_limit_high(self, value: float) -> None:
        with _as_devfailed("Automation1Axis.soft_limit_high"):
            status = self._backend.set_soft_limits(self._axis, self._status().soft_limit_low, value)
        self._update_position_limits(status)

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE, doc="Drive enabled; writing True/False = Enable/Disable")
    def enabled(self) -> bool:
        return self._status().enabled

    @enabled.write
    def enabled(self, value: bool) -> None:
        with _as_devfailed("Automation1Axis.enabled"):
            (self._backend.enable if value else self._backend.disable)(self._axis)

    @attribute(dtype=bool, doc="True once the axis was homed (Home)")
    def homed(self) -> bool:
        return self._status().homed

    @attribute(dtype=bool, doc="At rest on position_target")
    def at_target(self) -> bool:
        return self._status().at_target

    @attribute(dtype=str, doc="Active faults, comma separated; empty when none (clear with FaultAck)")
    def faults(self) -> str:
        return ", ".join(self._status().faults)

    @attribute(
        dtype=float,
        min_value=0.0,
        max_value=1.0,
        format="%.3f",
        doc="Progress of the current move, planned time elapsed 0..1; 1 at rest",
    )
    def move_progress(self) -> float:
        return self._status().move_progress

    # Commands

    @command(doc_in="Enable the drive")
    def Enable(self) -> None:
        with _as_devfailed("Automation1Axis.Enable"):
            self._backend.enable(self._axis)

    @command(doc_in="Stop and disable the drive")
    def Disable(self) -> None:
        with _as_devfailed("Automation1Axis.Disable"):
            self._backend.disable(self._axis)

    @command(doc_in="Move to the home position and mark the axis homed")
    def Home(self) -> None:
        with _as_devfailed("Automation1Axis.Home"):
            self._backend.home(self._axis)

    @command(doc_in="Decelerate to rest")
    def Stop(self) -> None:
        with _as_devfailed("Automation1Axis.Stop"):
            self._backend.stop(self._axis)

    @command(doc_in="Clear the faults")
    def FaultAck(self) -> None:
        with _as_devfailed("Automation1Axis.FaultAck"):
            self._backend.fault_ack(self._axis)

    @command(dtype_in=float, doc_in="Move by this distance from the current target")
    def MoveRelative(self, distance: float) -> None:
        with _as_devfailed("Automation1Axis.MoveRelative"):
            self._backend.move_relative(self._axis, distance)


def _event_values(s: AxisStatus) -> dict[str, object]:
    """Attributes of an axis pushed when they change (position and progress go every tick)."""
    return {
        "position_target": s.target,
        "velocity": s.velocity,
        "acceleration": s.acceleration,
        "soft_limit_low": s.soft_limit_low,
        "soft_limit_high": s.soft_limit_high,
        "enabled": s.enabled,
        "homed": s.homed,
        "at_target": s.at_target,
        "faults": ", ".join(s.faults),
    }


def main(args: list[str] | None = None) -> None:
    # One event per PSO pulse arrives in bursts (one per simulation step, longer if the step is
    # late): give the publisher queue room beyond ZMQ's default 1000 so bursts are not dropped.
    os.environ.setdefault("TANGO_DS_EVENT_BUFFER_HWM", "20000")
    run((Automation1Controller, Automation1Axis), args=args)


if __name__ == "__main__":
    main()
