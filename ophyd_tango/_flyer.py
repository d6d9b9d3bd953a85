"""Fly scans: the Automation1 PSO gating a detector, as bluesky (and BEC) flyers.

- `PsoFlyer` drives a PSO controller (roles `pulse_counter`, `capture_count`, `capture`,
  `task_state`, `progress`) and one of its axes: `kickoff()` goes to the start, sets the pulse
  spacing and the fly velocity, arms PSO and starts the move (or runs a controller program);
  `complete()` finishes when the motion has ended and every pulse is captured.
- `DetectorFlyer` arms a Lima-style detector (roles `fly_trigger_mode`, `nb_frames`, `prepare`,
  `start`, `acq_status`, `frame_counter`) for N externally triggered frames; `complete()` finishes
  when the detector is Ready (every frame on disk, the file closed), with a timeout sized from N.
- `FlyPoints` turns the captured pulses and frames into one event per point, each event
  carrying a StreamDatum for its frame (the detector's own `FileStream` composes them).

Both flyers accept the BEC order stage -> configure -> kickoff -> complete -> complete -> unstage,
and stage/unstage are harmless for a device that takes no part in the scan. A complete() Status
reports progress to bluesky watchers (ProgressBarManager) and as BEC "progress" subscriptions,
and fails, naming the Tango device, when the device fails, stops short, or stops answering.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ophyd import Device
from ophyd.status import DeviceStatus

from ._acquisition import AcquisitionLogic
from ._deadline import Deadline, wait_until
from ._device import TangoDevice
from ._link import DeviceLink
from ._status import TangoStatus
from .core.errors import TangoDeviceError, TangoTimeoutError
from .core.roles import ROLE_KEYS, Roles

__all__ = ["DetectorFlyer", "FlyFailed", "FlyPoints", "FlyStatus", "PsoFlyer"]

logger = logging.getLogger(__name__)

POLL_PERIOD = 0.1  # seconds between progress reads while flying
UNREACHABLE_GRACE = 1.0  # seconds a device may fail to answer before the fly fails
CAPTURE_GRACE = 3.0  # seconds after the motion for the last captured positions and pulses
WRITE_ALLOWANCE = 0.02  # seconds per frame for a detector to empty its writer queue (2M frames)


class FlyFailed(TangoDeviceError):
    """A fly scan's motion, capture or acquisition failed, stopped short or timed out."""


class FlyStatus(TangoStatus):
    """The Status of a kickoff's motion or acquisition, tied to its flyer.

    `watch(func)` gets `name, current, initial, target, unit, fraction, time_elapsed` (bluesky's
    ProgressBarManager); the flyer runs its "progress" subscriptions with `value, max_value, done`
    (BEC). Its text carries the failure, so a run's stop document names the failing device.
    """

    def __init__(self, device: Device, target: int, unit: str):
        super().__init__(device, call_stop_on_failure=False)
        self.target = max(1, int(target))
        self.unit = unit
        self.current = 0
        self.started = time.monotonic()
        self._watchers: list[Callable[..., None]] = []
        self.add_callback(lambda status: self.notify(self.current))

    def watch(self, func: Callable[..., None]) -> None:
        self._watchers.append(func)
        self.notify(self.current)

    def notify(self, current: int) -> None:
        self.current = current
        for watcher in list(self._watchers):
            try:
                watcher(
                    name=self.device.name,
                    current=current,
                    initial=0,
                    target=self.target,
                    unit=self.unit,
                    precision=0,
                    fraction=max(0.0, 1.0 - current / self.target),
                    time_elapsed=time.monotonic() - self.started,
                )
            except Exception:
                logger.exception("fly status watcher %r failed", watcher)
        with contextlib.suppress(Exception):
            self.device.notify("progress", value=current, max_value=self.target, done=self.done)


def _follow(status: FlyStatus, poll: Callable[[], tuple[int, bool | str | None]], limit: float, what: str) -> None:
    """Poll until `poll` says done (True) or failed (a message); a poll that timed out, a device
    that stops answering for UNREACHABLE_GRACE, or a fly outlasting `limit`, fails the status."""
    deadline = Deadline(limit)
    failing_since: float | None = None
    while not status.done:
        try:
            current, verdict = poll()
        except TangoDeviceError as exc:
            failing_since = failing_since or time.monotonic()
            hung = isinstance(exc, TangoTimeoutError)  # it waited the link's timeout already
            if hung or time.monotonic() - failing_since >= UNREACHABLE_GRACE:
                status.set_exception(FlyFailed(f"{what} failed: {exc}", exc.reason))
                return
        except Exception as exc:  # a bug must fail the scan, never hang it
            status.set_exception(FlyFailed(f"{what} failed: {exc!r}"))
            return
        else:
            failing_since = None
            if current != status.current:
                status.notify(current)
            if verdict is True:
                status.set_finished()
                return
            if isinstance(verdict, str):
                status.set_exception(FlyFailed(verdict))
                return
        if deadline.expired:
            status.set_exception(TangoTimeoutError(f"{what} not finished after {limit:.1f} s"))
            return
        deadline.pause(POLL_PERIOD)


def _device_trl(device: Any, name: str) -> str:
    """`name` on the same Tango host as `device`."""
    trl = device.trl
    if trl.startswith("tango://") and not name.startswith("tango://"):
        host = trl.removeprefix("tango://").split("/", 1)[0]
        return f"tango://{host}/{name}"
    return name


@dataclass
class FlyPlan:
    """One configured fly: `num` pulses spaced `distance` from `start` to `stop` at `velocity`."""

    start: float
    stop: float
    num: int
    distance: float
    velocity: float
    program: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class PsoNames:
    """A PSO controller's attributes and commands, as its server spells them, from its roles."""

    pulse_counter: str
    capture_count: str
    capture_times: str
    capture_positions: str
    armed: str
    axis: str
    distance: str
    window_low: str
    window_high: str
    arm: str
    disarm: str
    # For controller programs (configure({"program": ...})); None where the server has none.
    task_state: str | None
    task_message: str | None
    run_program: str | None
    abort_program: str | None

    @classmethod
    def from_roles(cls, link: DeviceLink, roles: Roles, pso_axis: str) -> PsoNames:
        """Raises ValueError naming the device and the role when a needed role is missing."""

        def attribute(key: str, name: str | None = None) -> str:
            spelled = link.spelled(name if name is not None else roles.get(key))
            if spelled is None:
                raise ValueError(_missing_role(link, roles, key, "attribute"))
            return spelled

        def command(key: str) -> str:
            spelled = link.command_named(roles.get(key))
            if spelled is None:
                raise ValueError(_missing_role(link, roles, key, "command"))
            return spelled

        captures = [c.strip() for entry in roles.names("capture") for c in entry.split(",")]
        times = next((c for c in captures if "*" not in c), None)
        positions = next((c.replace("*", pso_axis.lower()) for c in captures if "*" in c), None)
        if times is None or positions is None:
            raise ValueError(_missing_role(link, roles, "capture", "attribute"))
        return cls(
            pulse_counter=attribute("pulse_counter"),
            capture_count=attribute("capture_count"),
            capture_times=attribute("capture", times),
            capture_positions=attribute("capture", positions),
            armed=attribute("pso_armed"),
            axis=attribute("pso_axis"),
            distance=attribute("pso_distance"),
            window_low=attribute("pso_window_low"),
            window_high=attribute("pso_window_high"),
            arm=command("pso_arm"),
            disarm=command("pso_disarm"),
            task_state=link.spelled(roles.get("task_state")),
            task_message=link.spelled(roles.get("task_message")),
            run_program=link.command_named(roles.get("run_program")),
            abort_program=link.command_named(roles.get("abort_program")),
        )


def _missing_role(link: DeviceLink, roles: Roles, key: str, what: str) -> str:
    declared = roles.get(key)
    found = f"{declared!r} is not a {what} of the device" if declared else "no such role"
    return f"{link.key}: PSO role {key!r} ({ROLE_KEYS[key]}): {found}; declare it in the server's bluesky_roles"


class _Flyer(Device):
    """What both flyers share: "progress" subscriptions, run by their FlyStatus."""

    SUB_PROGRESS = "progress"

    def notify(self, sub_type: str, **kwargs: Any) -> None:
        """Run the flyer's `sub_type` subscriptions with `kwargs`."""
        self._run_subs(sub_type=sub_type, **kwargs)


class PsoFlyer(_Flyer):
    """A PSO controller and one of its axes as a bluesky flyer (kickoff / complete).

    `configure({"start", "stop", "num", "exposure"})`: pulses at start + k * (stop - start) / num,
    k = 1..num (the arm position never fires), at one pulse per `exposure` seconds. Or
    `configure({"program": text, "num": pulses, "timeout": s})` to run a controller program (which
    configures and arms PSO itself) instead of a move.
    """

    def __init__(
        self,
        axis: Any,
        *,
        controller: Any = None,
        pso_axis: str | None = None,
        name: str | None = None,
        timeout: float = 3.0,
        kind: Any = None,
        read_attrs: list[str] | None = None,
        configuration_attrs: list[str] | None = None,
        parent: Any = None,
    ):
        if isinstance(axis, str):
            axis = TangoDevice(axis, timeout=timeout)
        properties = axis.proxy.get_property(["controller", "axis"])
        if controller is None:
            names = list(properties.get("controller") or [])
            if not names:
                raise ValueError(f"{axis.trl}: no `controller` property; pass controller=")
            controller = _device_trl(axis, names[0])
        if isinstance(controller, str):
            controller = TangoDevice(controller, timeout=timeout)
        self.axis = axis
        self.controller = controller
        self.pso_axis = pso_axis or (list(properties.get("axis") or []) or [axis.name.upper()])[0]
        super().__init__(
            prefix="",
            name=name or f"{axis.name}_pso",
            kind=kind,
            read_attrs=read_attrs,
            configuration_attrs=configuration_attrs,
            parent=parent,
        )
        self.pso = PsoNames.from_roles(controller.link, controller.roles, self.pso_axis)
        self.pulse_counter, self.capture_count = self.pso.pulse_counter, self.pso.capture_count
        self.capture_times, self.capture_positions = self.pso.capture_times, self.pso.capture_positions
        self.task_state = self.pso.task_state
        self.velocity_attr = axis.move_logic.velocity if axis.move_logic is not None else None
        self.plan: FlyPlan | None = None
        self.status: FlyStatus | None = None
        self._move: Any = None
        self._saved: dict[str, Any] = {}
        self._stopping = False

    # ---- BEC/bluesky life cycle ----------------------------------------------------------------
    def stage(self) -> list[Any]:
        """Remember what a fly changes (the axis velocity); nothing moves or arms."""
        if self.velocity_attr and not self._saved:
            self._saved["velocity"] = self.axis.link.read_one(self.velocity_attr).value
        return [self]

    def configure(self, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        old = self.read_configuration()
        num = int(d["num"])
        if num < 1:
            raise ValueError(f"{self.name}: num must be >= 1, got {num}")
        if d.get("program"):
            if self.pso.run_program is None or self.pso.task_state is None:
                missing = "run_program" if self.pso.run_program is None else "task_state"
                raise ValueError(_missing_role(self.controller.link, self.controller.roles, missing, "program role"))
            timeout = float(d.get("timeout", 600.0))
            self.plan = FlyPlan(math.nan, math.nan, num, math.nan, math.nan, str(d["program"]), timeout)
        else:
            start, stop, exposure = float(d["start"]), float(d["stop"]), float(d["exposure"])
            if start == stop or exposure <= 0:
                raise ValueError(f"{self.name}: need start != stop and exposure > 0")
            distance = abs(stop - start) / num
            self.plan = FlyPlan(start, stop, num, distance, distance / exposure)
        self.status = None
        return old, self.read_configuration()

    def read_configuration(self) -> dict[str, Any]:
        plan = self.plan
        if plan is None:
            return {}
        now = time.time()
        return {
            f"{self.name}_{key}": {"value": value, "timestamp": now}
            for key, value in (("num", plan.num), ("distance", plan.distance), ("velocity", plan.velocity))
        }

    def describe_configuration(self) -> dict[str, Any]:
        source = self.controller.link.source(self.pulse_counter)
        return {key: {"source": source, "dtype": "number", "shape": []} for key in self.read_configuration()}

    def kickoff(self) -> DeviceStatus:
        """Go to the start, set spacing and fly velocity, arm PSO, start the move (or program)."""
        status = TangoStatus(self, call_stop_on_failure=False)
        if self.plan is None:
            status.set_exception(FlyFailed(f"{self.name}: kickoff before configure"))
            return status
        self._stopping = False
        self.status = None
        threading.Thread(target=self._kickoff, args=(status,), name=f"kickoff:{self.name}", daemon=True).start()
        return status

    def _kickoff(self, status: DeviceStatus) -> None:
        plan, ctrl, pso = self.plan, self.controller.link, self.pso
        if plan is None:
            status.set_exception(FlyFailed(f"{self.name}: kickoff before configure"))
            return
        try:
            if ctrl.read_one(pso.armed).value:
                ctrl.command(pso.disarm)
            if plan.program is None:
                self.axis.set(plan.start).wait()
                if self._stopping:
                    raise FlyFailed(f"{self.name}: stopped before the fly started")
                low, high = sorted((plan.start, plan.stop))
                margin = plan.distance / 2  # pulse positions on the bounds must not be lost to rounding
                ctrl.write(pso.axis, self.pso_axis)
                ctrl.write(pso.distance, plan.distance)
                ctrl.write(pso.window_low, low - margin)
                ctrl.write(pso.window_high, high + margin)
                if self.velocity_attr:
                    self.axis.link.write(self.velocity_attr, plan.velocity)
                ctrl.command(pso.arm)
                self._move = self.axis.set(plan.stop)
                if self._move.done and not self._move.success:
                    raise self._move.exception(timeout=0)
            else:
                self._move = None
                ctrl.command(pso.run_program, plan.program)
        except Exception as exc:
            status.set_exception(exc)
            return
        status.set_finished()

    def complete(self) -> FlyStatus:
        """Finished when the motion (or program) has ended and all `num` pulses are captured.
        Asked twice (BEC), it returns the same Status; never kicked off, a finished one."""
        if self.status is not None:
            return self.status
        plan = self.plan
        status = self.status = FlyStatus(self, plan.num if plan else 1, "pulses")
        if plan is None or (self._move is None and plan.program is None):
            status.set_finished()
            return status
        if plan.program is None:
            limit = abs(plan.stop - plan.start) / plan.velocity * 1.5 + 10.0
        else:
            limit = plan.timeout or 600.0
        where = f"{self.name} ({self.controller.link.key}, {self.axis.link.key})"
        threading.Thread(
            target=_follow, args=(status, self._poll(plan), limit, where), name=f"complete:{self.name}", daemon=True
        ).start()
        return status

    def _poll(self, plan: FlyPlan) -> Callable[[], tuple[int, bool | str | None]]:
        ctrl, key, pso = self.controller.link, self.controller.link.key, self.pso
        names = [pso.pulse_counter, pso.capture_count, pso.armed]
        if plan.program is not None and pso.task_state is not None:
            names.append(pso.task_state)
        last: dict[str, Any] = {"pulses": 0, "ended": None, "running": False, "since": time.monotonic()}

        def poll() -> tuple[int, bool | str | None]:
            values = ctrl.read(names)
            pulses, captured = int(values[self.pulse_counter].value), int(values[self.capture_count].value)
            lost = pulses < last["pulses"] or not values[pso.armed].value
            if plan.program is None and lost:
                return pulses, f"{key}: PSO disarmed after {pulses} of {plan.num} pulses (controller restarted?)"
            last["pulses"] = pulses
            if self._stopping:
                return pulses, f"{self.name}: stopped after {pulses} of {plan.num} pulses"
            if plan.program is None:
                move = self._move
                if not move.done:
                    return pulses, None
                if not move.success:
                    return pulses, f"{self.axis.link.key}: {move.exception(timeout=0)}"
            elif pso.task_state is not None:
                task = ctrl.attribute_type(pso.task_state).to_bluesky(values[pso.task_state].value)
                if task == "Error":
                    message = ctrl.read_one(pso.task_message).value if pso.task_message else "(no task_message role)"
                    return pulses, f"{key}: program failed after {pulses} pulses: {message}"
                if task == "Running":
                    last["running"] = True
                elif task == "Idle" and (last["running"] or time.monotonic() - last["since"] > CAPTURE_GRACE):
                    return pulses, f"{key}: program stopped after {pulses} pulses (aborted, or controller restarted)"
                if task != "Complete":
                    return pulses, None
            if pulses == plan.num and captured >= plan.num:
                return pulses, True
            last["ended"] = last["ended"] or time.monotonic()
            if time.monotonic() - last["ended"] > CAPTURE_GRACE:
                return pulses, f"{key}: {pulses} PSO pulses ({captured} captured) for {plan.num} points"
            return pulses, None

        return poll

    def captured(self) -> dict[str, np.ndarray]:
        """Positions and times of the pulses captured since the last arm (element i: pulse i + 1)."""
        values = self.controller.link.read([self.capture_positions, self.capture_times])
        return {
            "positions": np.asarray(values[self.capture_positions].value, dtype=float),
            "timestamps": np.asarray(values[self.capture_times].value, dtype=float),
        }

    def stop(self, *, success: bool = False) -> None:
        """Disarm PSO and stop the axis (or abort the program); each step even if another fails."""
        self._stopping = True
        ctrl, pso = self.controller.link, self.pso
        steps: list[tuple[str, Callable[[], Any]]] = [(pso.disarm, lambda: ctrl.command(pso.disarm))]
        abort = pso.abort_program
        if self.plan is not None and self.plan.program is not None and abort is not None:
            steps.append((abort, lambda: ctrl.command(abort)))
        steps.append(("Stop", lambda: self.axis.stop(success=success)))
        steps.append(("waiting for the axis to stop", self._wait_at_rest))
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                logger.warning("%s: %s at stop failed: %s", self.name, what, exc)

    def _wait_at_rest(self, timeout: float = 5.0) -> None:
        """Return once the axis has left its moving states (a stop decelerates first)."""
        move, link = self.axis.move_logic, self.axis.link
        moving = move.moving_states if move is not None else set()
        wait_until(
            lambda: link.read(["State"])["State"].value not in moving,
            timeout,
            f"{link.key} still moving since Stop",
            period=0.02,
        )

    def unstage(self) -> list[Any]:
        """Stop a fly still running, disarm, restore the axis velocity."""
        running = self.status is None or not self.status.done
        if self.plan is not None and (self._move is not None or self.plan.program) and running:
            self.stop()
        else:
            with contextlib.suppress(Exception):
                if self.controller.link.read_one(self.pso.armed).value:
                    self.controller.link.command(self.pso.disarm)
        velocity = self._saved.pop("velocity", None)
        if velocity is not None:
            try:
                self.axis.link.write(self.velocity_attr, velocity)
            except Exception as exc:  # a restarted server may not be back yet: never hide the run's error
                # Kept: the next unstage restores the user's velocity, not the fly's (it is memorized).
                self._saved["velocity"] = velocity
                logger.warning("%s: restoring the velocity failed (retried at the next unstage): %s", self.name, exc)
        self._move = None
        return [self]


class DetectorFlyer(_Flyer):
    """A file-writing detector `TangoDevice` armed for N externally triggered frames.

    `configure({"num": N, "exposure": t})` (optional "trigger_mode", "timeout");
    kickoff() selects the fly trigger mode, prepares and starts; complete() waits until the
    detector is Ready with N frames saved (writer idle, file closed).
    """

    SUB_FILE_EVENT = "file_event"

    def __init__(
        self,
        detector: Any,
        *,
        name: str | None = None,
        timeout: float = 3.0,
        kind: Any = None,
        read_attrs: list[str] | None = None,
        configuration_attrs: list[str] | None = None,
        parent: Any = None,
    ):
        if isinstance(detector, str):
            detector = TangoDevice(detector, timeout=timeout)
        acquisition = detector.acquisition
        if acquisition is None or acquisition.frame_counter is None:
            raise TypeError(f"{detector.name} ({detector.trl}) has no frame_counter role: it cannot fly")
        self.detector = detector
        super().__init__(
            prefix="",
            name=name or f"{detector.name}_fly",
            kind=kind,
            read_attrs=read_attrs,
            configuration_attrs=configuration_attrs,
            parent=parent,
        )
        roles, link = detector.roles, detector.link
        self.acquisition: AcquisitionLogic = acquisition
        self.frame_counter: str = acquisition.frame_counter
        self.stream = detector.stream
        self.fly_trigger_mode = roles.get("fly_trigger_mode", "EXTERNAL_GATE")
        self.settings = [n for n in (self.acquisition.trigger_mode, self.acquisition.nb_frames) if n]
        self.settings += [self.acquisition.exposure] if self.acquisition.exposure else []
        start_command = link.command_named(roles.get("start")) or acquisition.trigger_command
        if start_command is None:
            raise TypeError(f"{detector.name} ({detector.trl}) has no start nor trigger role: it cannot fly")
        self.start_command: str = start_command
        self.num = 0
        self.exposure: float | None = None
        self.trigger_mode = self.fly_trigger_mode
        self.timeout: float | None = None
        self.status: FlyStatus | None = None
        self.armed = False
        self._saved: dict[str, Any] = {}
        self._stopping = False

    def stage(self) -> list[Any]:
        """Remember the settings a fly changes; the detector is not armed yet."""
        if not self._saved and self.settings:
            self._saved = {name: value.value for name, value in self.detector.link.read(self.settings).items()}
        return [self]

    def configure(self, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        old = {"num": self.num, "exposure": self.exposure}
        self.num = int(d["num"])
        self.exposure = float(d["exposure"]) if d.get("exposure") is not None else None
        self.trigger_mode = d.get("trigger_mode", self.fly_trigger_mode)
        self.timeout = float(d["timeout"]) if d.get("timeout") is not None else None
        self.status = None
        return old, {"num": self.num, "exposure": self.exposure}

    def kickoff(self) -> DeviceStatus:
        """Set trigger mode, frames and exposure; prepare (opens the file) and start (armed)."""
        status = TangoStatus(self, call_stop_on_failure=False)
        if self.num < 1:
            status.set_exception(FlyFailed(f"{self.name}: kickoff before configure"))
            return status
        link, acq = self.detector.link, self.acquisition
        self._stopping = False
        self.status = None
        try:
            if acq.trigger_mode:
                link.write(acq.trigger_mode, link.attribute_type(acq.trigger_mode).to_tango(self.trigger_mode))
            if acq.nb_frames:
                link.write(acq.nb_frames, self.num)
            if acq.exposure and self.exposure is not None:
                link.write(acq.exposure, self.exposure)
            acq.frames_triggered = acq.frames_saved = 0
            if self.stream is not None:
                self.stream.reset()
            if acq.prepare_command:
                link.command(acq.prepare_command)
            if self.stream is not None:
                self.stream.after_prepare()
            self.armed = True
            link.command(self.start_command)
        except Exception as exc:
            status.set_exception(exc)
            return status
        status.set_finished()
        return status

    def complete(self) -> FlyStatus:
        """Finished when the detector is Ready with `num` frames saved; fails on Fault, on fewer
        frames, or after a timeout of 10 s + num * (exposure + WRITE_ALLOWANCE)."""
        if self.status is not None:
            return self.status
        status = self.status = FlyStatus(self, max(self.num, 1), "frames")
        if not self.armed:
            status.set_finished()
            return status
        limit = self.timeout or 10.0 + self.num * ((self.exposure or 0.0) + WRITE_ALLOWANCE)
        where = f"{self.name} ({self.detector.link.key})"
        threading.Thread(
            target=_follow, args=(status, self._poll, limit, where), name=f"complete:{self.name}", daemon=True
        ).start()
        status.add_callback(self._after_complete)
        return status

    def _poll(self) -> tuple[int, bool | str | None]:
        acq, key = self.acquisition, self.detector.link.key
        names = [self.frame_counter] + ([acq.acq_status] if acq.acq_status else [])
        values = self.detector.link.read(names)
        saved = int(values[self.frame_counter].value) + 1
        acq.frames_saved = max(acq.frames_saved, saved)
        label = acq.label(values[acq.acq_status].value) if acq.acq_status else acq.ready_value
        if label == acq.fault_value:
            return saved, f"{key}: acquisition failed after {saved} of {self.num} frames: {acq.status_text()}"
        if self._stopping:
            return saved, f"{self.name}: stopped after {saved} of {self.num} frames"
        if label != acq.ready_value:
            return saved, None
        if saved >= self.num:
            return saved, True
        return saved, f"{key}: acquisition ended with {saved} of {self.num} frames"

    def _after_complete(self, status: FlyStatus) -> None:
        if status.success:
            self.armed = False

    def stop(self, *, success: bool = False) -> None:
        """Abort the acquisition and wait until the detector is Ready (its file closed)."""
        self._stopping = True
        acq = self.acquisition
        if not self.armed:
            return
        self.armed = False
        try:
            command = acq.abort_command or acq.stop_command
            if command and acq.acq_status_label(fresh=True) != acq.ready_value:
                self.detector.link.command(command)
            acq.wait_until_ready(10.0)
        except Exception as exc:
            logger.warning("%s: stopping the acquisition failed: %s", self.name, exc)

    def unstage(self) -> list[Any]:
        """Stop an acquisition still running; restore trigger mode, frames and exposure."""
        if self.armed:
            self.stop()
        saved, self._saved = self._saved, {}
        link = self.detector.link
        for name, value in saved.items():
            try:
                if link.read_one(name).value != value:
                    link.write(name, link.attribute_type(name).to_tango(value))
            except Exception as exc:
                logger.warning("%s: restoring %s failed: %s", self.name, name, exc)
        return [self]


class FlyPoints:
    """One event per point: the captured position and pulse time, each detector's frame index,
    and (through the detector's FileStream) a StreamDatum for the frame. `trigger()` loads the
    pulses captured so far (during the fly too); each read() is the next point, and `ready()`
    says how many points have both their pulse captured and their frames saved."""

    def __init__(self, pso: PsoFlyer, detectors: list[DetectorFlyer], *, name: str = "fly_points"):
        self.name = name
        self.parent = None
        self.pso = pso
        self.detectors = detectors
        self.position_key = pso.axis.name
        self.time_key = f"{pso.axis.name}_pulse_time"
        self._data: dict[str, np.ndarray] = {}
        self._next = 0
        self._current = -1
        self._fly: Any = None  # the PSO's complete() Status of the fly the points belong to

    def trigger(self) -> DeviceStatus:
        """Load the pulses captured so far; within one fly, reading goes on where it left off.
        A failed read while the fly runs loads nothing new: the PSO's complete() names the fault."""
        status = TangoStatus(self.pso)
        flying = self.pso.status is not None and not self.pso.status.done
        try:
            data = self.pso.captured()
            if self._fly is None or self._fly is not self.pso.status:
                self._fly, self._next, self._current = self.pso.status, 0, -1
            self._data = data
        except Exception as exc:
            if not flying:
                status.set_exception(exc)
                return status
        status.set_finished()
        return status

    def __len__(self) -> int:
        return min(len(self._data.get("positions", ())), len(self._data.get("timestamps", ())))

    def ready(self) -> int:
        """Points loaded by the last trigger() whose frame every detector has saved."""
        return min([len(self), *(det.acquisition.frames_saved for det in self.detectors)])

    def describe(self) -> dict[str, dict[str, Any]]:
        link = self.pso.controller.link
        move = self.pso.axis.move_logic
        axis_type = move.readback_type if move is not None else None
        described: dict[str, dict[str, Any]] = {
            self.position_key: {
                "source": link.source(self.pso.capture_positions),
                "dtype": "number",
                "shape": [],
                "units": (axis_type.unit if axis_type else None) or "",
            },
            self.time_key: {
                "source": link.source(self.pso.capture_times),
                "dtype": "number",
                "shape": [],
                "units": "s",
            },
        }
        for det in self.detectors:
            described[f"{det.detector.name}_frame"] = {
                "source": det.detector.link.source(det.frame_counter),
                "dtype": "integer",
                "shape": [],
            }
            if det.stream is not None:
                described.update(det.stream.describe())
        return described

    def read(self) -> dict[str, dict[str, Any]]:
        index = self._next
        if index >= len(self):
            raise IndexError(f"{self.name}: {len(self)} points captured, point {index} asked for")
        self._next, self._current = index + 1, index
        stamp = float(self._data["timestamps"][index])
        reading = {
            self.position_key: {"value": float(self._data["positions"][index]), "timestamp": stamp},
            self.time_key: {"value": stamp, "timestamp": stamp},
        }
        for det in self.detectors:
            reading[f"{det.detector.name}_frame"] = {"value": index, "timestamp": stamp}
        return reading

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The StreamResource (first time) and the StreamDatum of the frame of the point just read."""
        for det in self.detectors:
            if det.stream is not None:
                yield from det.stream.collect_asset_docs(self._current + 1)

    def get_index(self) -> int:
        return self._current + 1
