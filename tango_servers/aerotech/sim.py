"""A physics simulator of an Automation1 controller (no Tango import), implementing `Automation1Backend`.

Time: the simulator keeps its own clock (seconds since the epoch; real time unless `time_scale`
says otherwise). Every public method first advances the simulation to "now", then acts at that
instant. Moves are exact trapezoids (`profile.Motion`), so positions, move ends, PSO pulse
positions and the positions latched at each pulse do not depend on how often the simulation is
stepped; programs run as discrete events at exact times (a statement waiting for a move to end
resumes at the very instant it ends).

PSO (distance mode): when armed at position p0, the PSO axis fires a pulse each time it reaches
p0 + k * distance for a whole number k != 0 (reaching within 1e-9 of a distance counts), in
either direction, while the pulse position lies inside [window_low, window_high] (bounds
included). The arm position itself never fires: a move of 10 mm from where PSO was armed at
distance 0.01 gives exactly 1000 pulses, the last one on arrival. Arming resets the pulse count
and the captured data to zero. At each pulse the positions of all axes are latched at the exact
crossing time (interpolated on their profiles) together with that time.

Threads: one worker thread steps the simulation (every `tick` seconds while something moves,
every `idle_tick` otherwise), delivers the events to listeners in order, and saves the axis
positions to `state_file` (at 10 Hz while moving) so a restarted process resumes from where
the axes were, at rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import (
    AxisConfig,
    AxisEvent,
    AxisStatus,
    BackendEvent,
    CapturedData,
    Listener,
    MotionError,
    PsoEvent,
    PsoStatus,
    PulseEvent,
    TaskEvent,
    TaskState,
    TaskStatus,
)
from .limits import (
    MAX_CAPTURE,
    MAX_PULSES_PER_EVENT,
    check_can_move,
    check_number,
    check_pso_distance,
    check_speed,
    check_target,
)
from .profile import Motion, plan_move, scaled, stopping_motion
from .program import Program, ProgramError, ProgramRunner, VirtualAxis, VirtualMachine, dry_run, linear_path_limits
from .program import parse as parse_program

log = logging.getLogger(__name__)

DEFAULT_AXES = (
    AxisConfig("X", "mm"),
    AxisConfig("Y", "mm"),
    AxisConfig("Z", "mm"),
    AxisConfig.from_spec("OMEGA deg"),
)
_GRID_EPS = 1e-9  # in units of the PSO distance: reaching this close to a pulse position counts
_PERSIST_PERIOD = 0.1
_TASK_EVENT_PERIOD = 0.05
_CAPTURE_EVENT_PERIOD = 0.5


class SimClock:
    """Seconds since the epoch, running `time_scale` times faster than the wall clock."""

    def __init__(self, time_scale: float = 1.0):
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.time_scale = time_scale
        self._epoch0 = time.time()
        self._mono0 = time.monotonic()

    def __call__(self) -> float:
        return self._epoch0 + (time.monotonic() - self._mono0) * self.time_scale


@dataclass
class _Axis:
    config: AxisConfig
    position: float
    target: float
    velocity: float
    acceleration: float
    soft_limit_low: float
    soft_limit_high: float
    enabled: bool = True
    homed: bool = False
    faults: tuple[str, ...] = ()
    motion: Motion | None = None
    homing: bool = False
    message: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    def position_at(self, t: float) -> float:
        return self.position if self.motion is None else self.motion.position(t)

    def velocity_at(self, t: float) -> float:
        return 0.0 if self.motion is None else self.motion.velocity(t)


@dataclass
class _Pso:
    axis: str
    distance: float = 0.01
    window_low: float = -1e9
    window_high: float = 1e9
    armed: bool = False
    origin: float = 0.0
    count: int = 0


@dataclass
class _Capture:
    """Growable arrays of latched pulse data, capped at `capacity` entries."""

    axes: tuple[str, ...]
    capacity: int
    count: int = 0
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    positions: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.positions = np.empty((len(self.axes), 0))  # one row per axis, even before the first pulse

    def clear(self) -> None:
        self.count = 0

    def append(self, times: np.ndarray, positions: list[np.ndarray]) -> None:
        n = min(len(times), self.capacity - self.count)
        if n <= 0:
            return
        need = self.count + n
        if need > len(self.times):
            size = min(self.capacity, max(4096, 2 * need))
            grown_t = np.empty(size)
            grown_p = np.empty((len(self.axes), size))
            if self.count:
                grown_t[: self.count] = self.times[: self.count]
                grown_p[:, : self.count] = self.positions[:, : self.count]
            self.times, self.positions = grown_t, grown_p
        self.times[self.count : need] = times[:n]
        for i, column in enumerate(positions):
            self.positions[i, self.count : need] = column[:n]
        self.count = need

    def snapshot(self) -> CapturedData:
        n = self.count
        return CapturedData(self.times[:n].copy(), {a: self.positions[i, :n].copy() for i, a in enumerate(self.axes)})


class Automation1Sim:
    """The simulated controller. Thread-safe; callbacks run on its worker thread only."""

    def __init__(
        self,
        axes: Sequence[AxisConfig] = DEFAULT_AXES,
        *,
        state_file: Path | str | None = None,
        clock: Callable[[], float] | None = None,
        tick: float = 0.01,
        idle_tick: float = 0.2,
        capture_capacity: int = 1_000_000,
        start: bool = True,
    ):
        if not axes:
            raise ValueError("the controller needs at least one axis")
        if not 1 <= capture_capacity <= MAX_CAPTURE:
            raise ValueError(
                f"capture_capacity {capture_capacity} must be between 1 and {MAX_CAPTURE} (Tango's spectra)"
            )
        self._configs = tuple(axes)
        self._clock = clock or SimClock()
        self._tick = tick
        self._idle_tick = idle_tick
        self._cond = threading.Condition(threading.Lock())
        self._listeners: list[Listener] = []
        self._outbox: list[BackendEvent] = []
        self._t = self._clock()
        self._axes = {
            c.name: _Axis(c, 0.0, 0.0, c.velocity, c.acceleration, c.soft_limit_low, c.soft_limit_high)
            for c in self._configs
        }
        self._pso = _Pso(axis=self._configs[0].name)
        self._capture = _Capture(tuple(self._axes), capture_capacity)
        self._capture_announced = (0, self._t)
        self._count_announced = 0
        self._task: ProgramRunner | None = None
        self._task_status = TaskStatus(TaskState.Idle, 0.0, 0, "", self._t)
        self._task_wake: float | None = None
        self._task_start = 0.0
        self._task_duration = 0.0
        self._task_announced = 0.0
        self._last_moving_emit = -math.inf
        self._state_file = Path(state_file) if state_file else None
        self._persisted: dict | None = None
        self._persisted_at = -math.inf
        self._load_state()
        self._closed = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="automation1-sim", daemon=True)
            self._thread.start()

    # Listeners and lifecycle

    @property
    def axes(self) -> tuple[AxisConfig, ...]:
        return self._configs

    def add_listener(self, listener: Listener) -> None:
        with self._cond:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def close(self) -> None:
        """Stop the worker thread and save the axis positions; no listener is called any more."""
        with self._cond:
            self._closed = True
            self._listeners.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self.poll()

    def flush(self) -> None:
        """Save the axis positions now (the server calls this when it shuts down)."""
        with self._cond:
            self._now()
            self._persisted = None  # force a write
            self._persisted_at = -math.inf
            content = self._persist_content()
        if content is not None:
            self._write_state(content)

    def poll(self) -> None:
        """One worker iteration: advance to now, emit, deliver events, save state. Tests call
        this directly on a simulator built with start=False and a manual clock."""
        with self._cond:
            self._advance(self._clock())
            self._emit_periodic()
            events, self._outbox = self._outbox, []
            listeners = list(self._listeners)
            persist = self._persist_content()
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("listener failed on %s", type(event).__name__)
        if persist is not None:
            self._write_state(persist)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
            try:
                self.poll()
            except Exception:  # a bug must not silently freeze the controller: log it and go on
                log.exception("simulation step failed")
                time.sleep(self._idle_tick)
            with self._cond:
                if not self._outbox and not self._closed:
                    self._cond.wait(self._tick if self._active() else self._idle_tick)

    def _active(self) -> bool:
        return (
            any(a.motion is not None for a in self._axes.values())
            or self._task is not None
            or self._count_announced != self._pso.count
            or self._capture_announced[0] != self._capture.count
        )

    def _now(self) -> float:
        """Advance to the current time (lock held) and return it."""
        self._advance(self._clock())
        return self._t

    def _notify(self) -> None:
        if self._outbox:
            self._cond.notify_all()

    # Reads

    def axis_status(self, axis: str) -> AxisStatus:
        with self._cond:
            return self._status(self._axis(axis), self._now())

    def pso_status(self) -> PsoStatus:
        with self._cond:
            self._now()
            return self._pso_status()

    def captured(self) -> CapturedData:
        with self._cond:
            self._now()
            return self._capture.snapshot()

    def task_status(self) -> TaskStatus:
        with self._cond:
            t = self._now()
            return self._current_task_status(t)

    # Axis commands

    def move_absolute(self, axis: str, target: float, velocity: float | None = None) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            self._check_not_in_program(ax)
            self._start_move(t, ax, target, velocity)
            return self._done(ax, t)

    def move_relative(self, axis: str, distance: float, velocity: float | None = None) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            check_number(ax.name, distance, "the distance")
            self._check_not_in_program(ax)
            base = ax.motion.target if ax.motion is not None else ax.position
            self._start_move(t, ax, base + distance, velocity)
            return self._done(ax, t)

    def stop(self, axis: str) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            if self._task is not None and ax.name in self._task.program.moved_axes:
                self._end_task(t, TaskState.Idle, f"stopped by Stop on axis {ax.name} at line {self._task.line}")
            self._halt(t, ax, ax.acceleration)
            return self._done(ax, t)

    def enable(self, axis: str) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            self._enable(t, ax)
            return self._done(ax, t)

    def disable(self, axis: str) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            self._check_not_in_program(ax)
            self._disable(t, ax)
            return self._done(ax, t)

    def home(self, axis: str) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            self._check_not_in_program(ax)
            self._home(t, ax)
            return self._done(ax, t)

    def fault_ack(self, axis: str) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            if ax.faults:
                ax.faults = ()
                ax.message = "faults acknowledged"
                self._emit_axis(ax, t)
            return self._done(ax, t)

    def set_velocity(self, axis: str, velocity: float) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            check_speed(ax.name, velocity, ax.config.max_velocity, ax.config.units)
            ax.velocity = float(velocity)
            self._emit_axis(ax, t)
            return self._done(ax, t)

    def set_acceleration(self, axis: str, acceleration: float) -> AxisStatus:
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            check_number(ax.name, acceleration, "the acceleration")
            limit = ax.config.max_acceleration
            if not 0 < acceleration <= limit:
                raise MotionError(
                    "InvalidAcceleration",
                    f"acceleration {acceleration:g} {ax.config.units}/s^2 for axis {ax.name} must be "
                    f"positive and at most {limit:g} {ax.config.units}/s^2.",
                )
            ax.acceleration = float(acceleration)
            self._emit_axis(ax, t)
            return self._done(ax, t)

    def set_soft_limits(self, axis: str, low: float, high: float) -> AxisStatus:
        """Change the soft limits. A move whose target falls outside them is aborted with a fault."""
        with self._cond:
            t = self._now()
            ax = self._axis(axis)
            check_number(ax.name, low, "the soft limit low")
            check_number(ax.name, high, "the soft limit high")
            if not low < high:
                raise MotionError(
                    "InvalidSoftLimits",
                    f"soft limit low {low:g} must be below soft limit high {high:g} for axis {ax.name}.",
                )
            ax.soft_limit_low, ax.soft_limit_high = float(low), float(high)
            if ax.motion is not None and not low <= ax.motion.target <= high:
                which = "SoftLimitLow" if ax.motion.target < low else "SoftLimitHigh"
                self._fault(t, ax, which, f"the target of the move is outside the new soft limits [{low:g}, {high:g}]")
            self._emit_axis(ax, t)
            return self._done(ax, t)

    # PSO and capture

    def pso_configure(
        self,
        *,
        axis: str | None = None,
        distance: float | None = None,
        window_low: float | None = None,
        window_high: float | None = None,
    ) -> PsoStatus:
        with self._cond:
            t = self._now()
            self._pso_configure(t, axis, distance, window_low, window_high)
            self._notify()
            return self._pso_status()

    def pso_arm(self) -> PsoStatus:
        with self._cond:
            t = self._now()
            self._pso_arm(t)
            self._notify()
            return self._pso_status()

    def pso_disarm(self) -> PsoStatus:
        with self._cond:
            t = self._now()
            self._pso_disarm(t)
            self._notify()
            return self._pso_status()

    # Programs

    def run_program(self, text: str) -> TaskStatus:
        """Check `text` completely (syntax, then a dry run against limits), then start it.

        Raises MotionError("ProgramError", "line N: ...") and moves nothing when it is rejected.
        """
        try:  # outside the lock: a long program must not hold up the worker or axis reads
            program = parse_program(text, list(self._axes))
        except ProgramError as exc:
            raise MotionError("ProgramSyntaxError", str(exc)) from exc
        with self._cond:
            self._check_can_start(program)
            machine, basis = self._virtual_machine(), self._program_basis()
        try:  # the dry run works on a copy, also outside the lock
            duration = dry_run(program, machine)
        except ProgramError as exc:
            raise MotionError("ProgramRejected", str(exc)) from exc
        with self._cond:
            t = self._now()
            self._check_can_start(program)
            if self._program_basis() != basis:
                raise MotionError(
                    "ProgramRejected", "the axes or PSO changed while the program was checked; run it again."
                )
            self._start_task(t, program, duration)
            self._notify()
            return self._current_task_status(t)

    def _check_can_start(self, program: Program) -> None:
        if self._task is not None:
            raise MotionError(
                "ProgramRunning", f"a program is running (line {self._task.line}); AbortProgram it first."
            )
        for name in program.moved_axes:
            if self._axes[name].motion is not None:
                raise MotionError("AxisBusy", f"axis {name} is moving; wait for it or Stop it before RunProgram.")

    def _program_basis(self) -> tuple:
        """Everything a dry run depends on, to tell whether it still holds (lock held)."""
        p = self._pso
        axes = tuple(
            (a.position, a.velocity, a.acceleration, a.soft_limit_low, a.soft_limit_high, a.enabled, a.faults, a.motion)
            for a in self._axes.values()
        )
        return axes, (p.axis, p.distance, p.window_low, p.window_high, p.armed)

    def abort_program(self) -> TaskStatus:
        """Stop the program and every axis it moves (abort deceleration); state Idle."""
        with self._cond:
            t = self._now()
            if self._task is not None:
                self._end_task(t, TaskState.Idle, f"aborted at line {self._task.line}")
            self._notify()
            return self._current_task_status(t)

    # Internals (lock held)

    def _axis(self, name: str) -> _Axis:
        ax = self._axes.get(name) or self._axes.get(name.upper())
        if ax is None:
            raise MotionError("UnknownAxis", f"unknown axis '{name}'; the axes are {', '.join(self._axes)}.")
        return ax

    def _done(self, ax: _Axis, t: float) -> AxisStatus:
        self._notify()
        return self._status(ax, t)

    def _status(self, ax: _Axis, t: float) -> AxisStatus:
        moving = ax.motion is not None
        return AxisStatus(
            axis=ax.name,
            timestamp=t,
            position=ax.position_at(t),
            target=ax.target,
            actual_velocity=ax.velocity_at(t),
            velocity=ax.velocity,
            acceleration=ax.acceleration,
            soft_limit_low=ax.soft_limit_low,
            soft_limit_high=ax.soft_limit_high,
            enabled=ax.enabled,
            homed=ax.homed,
            moving=moving,
            faults=ax.faults,
            move_progress=ax.motion.progress(t) if moving else 1.0,  # type: ignore[union-attr]
            message=ax.message,
        )

    def _emit_axis(self, ax: _Axis, t: float) -> None:
        self._outbox.append(AxisEvent(self._status(ax, t)))

    def _check_not_in_program(self, ax: _Axis) -> None:
        if self._task is not None and ax.name in self._task.program.moved_axes:
            raise MotionError("AxisInProgram", f"axis {ax.name} is driven by the running program; AbortProgram first.")

    def _start_move(self, t: float, ax: _Axis, target: float, speed: float | None) -> None:
        target = float(target)
        check_can_move(ax.name, ax.enabled, ax.faults)
        check_target(ax.name, target, ax.soft_limit_low, ax.soft_limit_high, ax.config.units)
        if speed is not None:
            check_speed(ax.name, speed, ax.config.max_velocity, ax.config.units)
        position, velocity = ax.position_at(t), ax.velocity_at(t)
        motion = plan_move(t, position, velocity, target, speed or ax.velocity, ax.acceleration)
        ax.homing = False
        ax.message = f"moving to {target:g} {ax.config.units}" if motion else f"in position at {target:g}"
        self._set_motion(t, ax, motion, target)

    def _set_motion(self, t: float, ax: _Axis, motion: Motion | None, target: float) -> None:
        ax.position = ax.position_at(t)
        ax.motion = motion
        ax.target = target
        if motion is None:
            ax.position = target
        self._emit_axis(ax, t)

    def _halt(self, t: float, ax: _Axis, deceleration: float) -> None:
        if ax.motion is None:
            return
        motion = stopping_motion(t, ax.position_at(t), ax.velocity_at(t), deceleration)
        ax.homing = False
        ax.message = "stopping" if motion else "stopped"
        self._set_motion(t, ax, motion, motion.target if motion else ax.position_at(t))

    def _fault(self, t: float, ax: _Axis, fault: str, why: str) -> None:
        ax.faults = (*ax.faults, fault) if fault not in ax.faults else ax.faults
        self._halt(t, ax, ax.config.abort_deceleration)
        ax.message = f"fault {fault}: {why}; acknowledge with FaultAck"
        self._emit_axis(ax, t)
        if self._task is not None and ax.name in self._task.program.moved_axes:
            self._end_task(t, TaskState.Error, f"line {self._task.line}: axis {ax.name} faulted ({fault})")

    def _enable(self, t: float, ax: _Axis) -> None:
        if not ax.enabled:
            ax.enabled = True
            ax.message = "enabled"
            self._emit_axis(ax, t)

    def _disable(self, t: float, ax: _Axis) -> None:
        self._halt(t, ax, ax.config.abort_deceleration)
        if ax.enabled:
            ax.enabled = False
            ax.message = "disabled"
            self._emit_axis(ax, t)

    def _home(self, t: float, ax: _Axis) -> None:
        self._start_move(t, ax, ax.config.home_position, None)
        if ax.motion is None:
            ax.homed = True
            ax.message = "homed"
        else:
            ax.homing = True
            ax.message = "homing"
        self._emit_axis(ax, t)

    def _pso_status(self) -> PsoStatus:
        p = self._pso
        return PsoStatus(p.axis, p.distance, p.window_low, p.window_high, p.armed, p.count, self._capture.count)

    def _pso_configure(
        self,
        t: float,
        axis: str | None,
        distance: float | None,
        window_low: float | None,
        window_high: float | None,
        *,
        check_only: bool = False,
    ) -> None:
        p = self._pso
        name = self._axis(axis).name if axis is not None else p.axis
        if p.armed and not check_only and (name != p.axis or (distance is not None and distance != p.distance)):
            raise MotionError("PsoArmed", "PSO is armed; PsoDisarm before changing the PSO axis or distance.")
        if distance is not None:
            config = self._axes[name].config
            check_pso_distance(name, distance, config.encoder_resolution, config.max_velocity, config.units)
        low = p.window_low if window_low is None else window_low
        high = p.window_high if window_high is None else window_high
        check_number(name, low, "the PSO window low")
        check_number(name, high, "the PSO window high")
        if not low <= high:
            raise MotionError("InvalidPsoWindow", f"PSO window low {low:g} must not be above PSO window high {high:g}.")
        if check_only:
            return
        p.axis = name
        p.distance = p.distance if distance is None else float(distance)
        p.window_low, p.window_high = float(low), float(high)
        self._emit_pso(capture_changed=False)

    def _pso_arm(self, t: float) -> None:
        p = self._pso
        p.armed = True
        p.origin = self._axes[p.axis].position_at(t)
        p.count = 0
        self._capture.clear()
        self._count_announced = 0
        self._capture_announced = (0, t)
        self._emit_pso(capture_changed=True)

    def _pso_disarm(self, t: float) -> None:
        if self._pso.armed:
            self._pso.armed = False
            self._count_announced = self._pso.count
            self._capture_announced = (self._capture.count, t)
            self._emit_pso(capture_changed=True)

    def _emit_pso(self, capture_changed: bool) -> None:
        self._outbox.append(PsoEvent(self._pso_status(), capture_changed))

    def _virtual_machine(self) -> VirtualMachine:
        axes = [
            VirtualAxis(
                name=a.name,
                units=a.config.units,
                position=a.position,
                velocity=a.velocity,
                max_velocity=a.config.max_velocity,
                acceleration=a.acceleration,
                soft_limit_low=a.soft_limit_low,
                soft_limit_high=a.soft_limit_high,
                enabled=a.enabled,
                faults=a.faults,
                home_position=a.config.home_position,
            )
            for a in self._axes.values()
        ]

        def validate_pso(**kwargs: float | str | None) -> None:
            self._pso_configure(self._t, check_only=True, **kwargs)  # type: ignore[arg-type]

        p = self._pso
        return VirtualMachine(axes, validate_pso, pso_axis=p.axis, pso_distance=p.distance, pso_armed=p.armed)

    # Programs (lock held)

    def _start_task(self, t: float, program: Program, duration: float) -> None:
        self._task = ProgramRunner(program, _TaskMachine(self))
        self._task_start, self._task_duration = t, duration
        self._task_status = TaskStatus(TaskState.Running, 0.0, self._task.line, "running", t)
        self._outbox.append(TaskEvent(self._task_status))
        self._task_announced = t
        self._resume_task(t)

    def _resume_task(self, t: float) -> None:
        task = self._task
        assert task is not None
        try:
            self._task_wake = task.resume(t)
        except ProgramError as exc:
            self._end_task(t, TaskState.Error, str(exc))
            return
        if self._task is task and self._task_wake is None:
            self._end_task(t, TaskState.Complete, "complete")

    def _end_task(self, t: float, state: TaskState, message: str) -> None:
        task = self._task
        if task is None:
            return
        line = task.line
        self._task, self._task_wake = None, None
        if state is not TaskState.Complete:
            for name in task.program.moved_axes:
                self._halt(t, self._axes[name], self._axes[name].config.abort_deceleration)
        progress = 1.0 if state is TaskState.Complete else self._task_progress(t)
        self._task_status = TaskStatus(state, progress, line, message, t)
        self._outbox.append(TaskEvent(self._task_status))

    def _task_progress(self, t: float) -> float:
        if self._task_duration <= 0:
            return 0.0
        return min(0.999, max(0.0, (t - self._task_start) / self._task_duration))

    def _current_task_status(self, t: float) -> TaskStatus:
        if self._task is None:
            return self._task_status
        return TaskStatus(TaskState.Running, self._task_progress(t), self._task.line, "running", t)

    # Stepping (lock held)

    def _advance(self, now: float) -> None:
        """Simulate from the last instant to `now`, stopping at each time the program wakes up."""
        while True:
            wake = self._task_wake if self._task is not None else None
            due = wake if wake is not None and wake <= now else None
            t = max(self._t, now if due is None else due)
            if t > self._t:
                self._integrate(self._t, t)
                self._t = t
            if due is None:
                return
            self._resume_task(t)

    def _integrate(self, t_a: float, t_b: float) -> None:
        """Fire the PSO pulses in (t_a, t_b] and finish the moves that end by t_b."""
        if self._pso.armed:
            self._fire_pulses(t_a, t_b)
        for ax in self._axes.values():
            motion = ax.motion
            if motion is not None and motion.end_time <= t_b:
                ax.position, ax.target, ax.motion = motion.target, motion.target, None
                if ax.homing:
                    ax.homing, ax.homed = False, True
                    ax.message = "homed"
                elif not ax.faults:
                    ax.message = f"in position at {motion.target:g} {ax.config.units}"
                self._emit_axis(ax, motion.end_time)

    def _fire_pulses(self, t_a: float, t_b: float) -> None:
        p = self._pso
        motion = self._axes[p.axis].motion
        if motion is None:
            return
        times: list[np.ndarray] = []  # relative to t_a: absolute epoch doubles only resolve ~0.2 us
        final = motion.segments[-1]  # the approach that decelerates onto the target
        toward = motion.target - final.p0
        for start, end, x_start, v_start, acc in motion.monotonic_pieces(t_a, t_b):
            dt = end - start
            x_end = motion.target if end >= motion.end_time else x_start + v_start * dt + 0.5 * acc * dt * dt
            if start >= final.t0 and toward:
                # Segment times are epoch doubles: evaluated near its end, the approach can pass the
                # target by ~1e-7 and the last piece come back onto it, reaching a pulse position
                # on the target twice (101 pulses for 100). The approach never passes the target.
                x_start, x_end = (
                    min(x, motion.target) if toward > 0 else max(x, motion.target) for x in (x_start, x_end)
                )
            crossing = _crossing_times(p, dt, x_start, x_end, v_start, acc)
            if crossing is not None:
                times.append((start - t_a) + crossing)
        if not times:
            return
        relative = np.concatenate(times) if len(times) > 1 else times[0]
        stamps = t_a + relative
        first = p.count + 1
        p.count += len(stamps)
        columns = [
            np.full(len(stamps), ax.position) if ax.motion is None else ax.motion.positions(relative, ref=t_a)
            for ax in self._axes.values()
        ]
        self._capture.append(stamps, columns)
        for start in range(0, len(stamps), MAX_PULSES_PER_EVENT):
            self._outbox.append(PulseEvent(first + start, stamps[start : start + MAX_PULSES_PER_EVENT].tolist()))

    def _emit_periodic(self) -> None:
        """Worker-tick events: moving axes (every tick), task progress and PSO counters (throttled)."""
        t = self._t
        if t - self._last_moving_emit >= 0.9 * self._tick:
            moving = [ax for ax in self._axes.values() if ax.motion is not None]
            for ax in moving:
                self._emit_axis(ax, t)
            if moving:
                self._last_moving_emit = t
        if self._task is not None and t - self._task_announced >= _TASK_EVENT_PERIOD:
            self._task_announced = t
            self._outbox.append(TaskEvent(self._current_task_status(t)))
        count, (announced, announced_t) = self._capture.count, self._capture_announced
        if self._pso.count != self._count_announced:  # new pulses: counters now, arrays at most at 2 Hz
            self._count_announced = self._pso.count
            capture_changed = count != announced and t - announced_t >= _CAPTURE_EVENT_PERIOD
            if capture_changed:
                self._capture_announced = (count, t)
            self._emit_pso(capture_changed)
        elif count != announced:  # the pulses paused or stopped: announce the captured arrays
            self._capture_announced = (count, t)
            self._emit_pso(capture_changed=True)

    # Persistence

    def _persist_content(self) -> dict | None:
        """What to save now, or None when nothing needs saving (lock held)."""
        if self._state_file is None:
            return None
        moving = any(a.motion is not None for a in self._axes.values())
        content = {
            name: {
                "position": ax.position_at(self._t),
                "enabled": ax.enabled,
                "homed": ax.homed,
                "moving": ax.motion is not None,
            }
            for name, ax in self._axes.items()
        }
        if content == self._persisted or (moving and self._t - self._persisted_at < _PERSIST_PERIOD):
            return None
        self._persisted, self._persisted_at = content, self._t
        return {"saved_at": self._t, "axes": content}

    def _write_state(self, content: dict) -> None:
        assert self._state_file is not None
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_name(f".{self._state_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(content, indent=1))
            tmp.replace(self._state_file)
        except OSError as exc:
            log.warning("cannot save axis positions to %s: %s", self._state_file, exc)

    def _load_state(self) -> None:
        if self._state_file is None or not self._state_file.exists():
            return
        try:
            saved = json.loads(self._state_file.read_text())["axes"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable axis state %s: %s", self._state_file, exc)
            return
        for name, ax in self._axes.items():
            entry = saved.get(name)
            if not isinstance(entry, dict):
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):
                position = float(entry["position"])
                if math.isfinite(position):
                    ax.position = ax.target = position
                ax.enabled = bool(entry.get("enabled", True))
                ax.homed = bool(entry.get("homed", False))
                if entry.get("moving"):
                    ax.message = (
                        f"the server stopped during a move; position restored from the last save "
                        f"({position:g} {ax.config.units})"
                    )


def _crossing_times(
    pso: _Pso, dt: float, x_start: float, x_end: float, v_start: float, acc: float
) -> np.ndarray | None:
    """When (seconds after the piece starts) the PSO axis reaches pulse positions on one monotonic
    piece of motion lasting dt, from x_start at velocity v_start with acceleration acc."""
    if x_end == x_start:
        return None
    d = pso.distance
    u_start, u_end = (x_start - pso.origin) / d, (x_end - pso.origin) / d
    if x_end > x_start:
        first, last = math.floor(u_start + _GRID_EPS) + 1, math.floor(u_end + _GRID_EPS)
        step, sign = 1, 1.0
    else:
        first, last = math.ceil(u_start - _GRID_EPS) - 1, math.ceil(u_end - _GRID_EPS)
        step, sign = -1, -1.0
    if (last - first) * step < 0:
        return None
    k = np.arange(first, last + step, step, dtype=float)
    grid = pso.origin + k * d
    tol = _GRID_EPS * d
    grid = grid[(grid >= pso.window_low - tol) & (grid <= pso.window_high + tol)]
    if len(grid) == 0:
        return None
    delta = grid - x_start
    root = np.sqrt(np.maximum(v_start * v_start + 2.0 * acc * delta, 0.0))
    denominator = v_start + sign * root
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(denominator != 0.0, 2.0 * delta / denominator, 0.0)
    return np.clip(tau, 0.0, dt)


class _TaskMachine:
    """The program runner's view of the simulator (called with the lock held, at exact times)."""

    def __init__(self, sim: Automation1Sim):
        self.sim = sim

    def motion_end_time(self, axes: Sequence[str]) -> float:
        ends = [m.end_time for a in axes if (m := self.sim._axes[a].motion) is not None]
        return max(ends, default=-math.inf)

    def position(self, axis: str) -> float:
        return self.sim._axes[axis].position_at(self.sim._t)

    def move(
        self, t: float, axes: Sequence[str], targets: Sequence[float], speeds: Sequence[float | None], linear: bool
    ) -> None:
        sim = self.sim
        moved = [sim._axes[a] for a in axes]
        for ax, target in zip(moved, targets, strict=True):
            check_can_move(ax.name, ax.enabled, ax.faults)
            check_target(ax.name, target, ax.soft_limit_low, ax.soft_limit_high, ax.config.units)
        if not linear:
            for ax, target, speed in zip(moved, targets, speeds, strict=True):
                sim._start_move(t, ax, target, speed)
            return
        starts = [ax.position_at(t) for ax in moved]
        deltas = [target - s for target, s in zip(targets, starts, strict=True)]
        limits = linear_path_limits([_Limits(ax) for ax in moved], deltas)
        speed = limits.default_speed
        if speeds[0] is not None:
            check_speed("/".join(axes), speeds[0], limits.max_speed, "path units")
            speed = speeds[0]
        length = math.hypot(*deltas)
        path = plan_move(t, 0.0, 0.0, length, speed, limits.acceleration)
        for ax, start, delta, target in zip(moved, starts, deltas, targets, strict=True):
            motion = None if path is None or delta == 0 else scaled(path, start, delta / length, target)
            ax.homing = False
            ax.message = f"moving to {target:g} {ax.config.units} (linear)"
            sim._set_motion(t, ax, motion, target)

    def enable(self, t: float, axis: str) -> None:
        self.sim._enable(t, self.sim._axes[axis])

    def disable(self, t: float, axis: str) -> None:
        self.sim._disable(t, self.sim._axes[axis])

    def home(self, t: float, axis: str) -> None:
        self.sim._home(t, self.sim._axes[axis])

    def pso_configure(
        self,
        t: float,
        axis: str,
        distance: float | None = None,
        window_low: float | None = None,
        window_high: float | None = None,
    ) -> None:
        self.sim._pso_configure(t, axis, distance, window_low, window_high)

    def pso_arm(self, t: float) -> None:
        self.sim._pso_arm(t)

    def pso_disarm(self, t: float) -> None:
        self.sim._pso_disarm(t)


class _Limits:
    """Adapter giving linear_path_limits the current velocity/acceleration of a simulated axis."""

    def __init__(self, ax: _Axis):
        self.velocity = ax.velocity
        self.max_velocity = ax.config.max_velocity
        self.acceleration = ax.acceleration
