"""How a movable `TangoDevice` moves: write the setpoint, watch the device settle, report progress.

A move is done when State leaves the moving states (and the readback's quality leaves CHANGING)
with the readback at the target within tolerance. It fails, with a message naming the device,
the target and Tango's words, when the write is refused, the device goes to FAULT (or ALARM away
from the target), it stops short of the target, or the move outlasts a timeout derived from the
distance and the device's velocity. Nothing here ever waits without a deadline.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import tango

from ._deadline import UNREACHABLE_GRACE, Deadline
from ._host import LogicHost
from ._link import AttributeValue, DeviceLink
from ._status import TangoStatus
from .core.errors import TangoDeviceError, TangoTimeoutError
from .core.roles import Roles
from .core.subscription import AttributeUpdate

__all__ = ["MoveFailed", "MoveLogic", "MoveStatus"]

logger = logging.getLogger(__name__)

DEFAULT_MOVE_TIMEOUT = 120.0  # seconds, when the device says nothing about its speed
START_GRACE = 1.0  # seconds a device may take to report MOVING after accepting a setpoint
SAFETY_PERIOD = 1.0  # seconds between confirming reads even while events say "moving"


class MoveFailed(TangoDeviceError):
    """A move was refused, faulted, stopped short of its target or timed out."""


class MoveStatus(TangoStatus):
    """The Status of one move, tied to the device; `watch()` reports progress to bluesky."""

    def __init__(self, device: LogicHost, target: Any, initial: Any, unit: str | None, precision: int | None):
        # Failure handling is ours: a superseded move must not stop the move that replaced it.
        super().__init__(device, call_stop_on_failure=False)
        self.target = target
        self.initial = initial
        self.unit = unit or ""
        self.precision = precision
        self.started = time.monotonic()
        self.stop_requested = False
        self.stop_success = False
        self._watchers: list[Callable[..., None]] = []

    def watch(self, func: Callable[..., None]) -> None:
        """Call `func(name=, current=, initial=, target=, unit=, precision=, fraction=, ...)`."""
        self._watchers.append(func)

    def notify(self, current: Any) -> float | None:
        """Tell watchers about a new readback; returns the fraction of the move remaining."""
        fraction = _fraction_remaining(self.initial, current, self.target)
        for watcher in list(self._watchers):
            try:
                watcher(
                    name=self.device.name,
                    current=current,
                    initial=self.initial,
                    target=self.target,
                    unit=self.unit,
                    precision=self.precision,
                    fraction=fraction,
                    time_elapsed=time.monotonic() - self.started,
                )
            except Exception:
                logger.exception("move status watcher %r failed", watcher)
        return fraction


def _fraction_remaining(initial: Any, current: Any, target: Any) -> float | None:
    try:
        span = abs(float(target) - float(initial))
        if span == 0:
            return 0.0
        return min(1.0, max(0.0, abs(float(target) - float(current)) / span))
    except (TypeError, ValueError):
        return None


class MoveLogic:
    """Moves one device by its roles: readback, setpoint, moving_state, tolerance, stop, progress."""

    def __init__(self, device: LogicHost, link: DeviceLink, roles: Roles):
        self.device = device
        self.link = link
        readback = link.spelled(roles.get("readback") or roles.get("setpoint"))
        setpoint = link.spelled(roles.get("setpoint"))
        if readback is None or setpoint is None:
            raise ValueError(
                f"{link.key}: setpoint role {roles.get('setpoint')!r} (readback {roles.get('readback')!r}) "
                "names no attribute of the device"
            )
        self.readback: str = readback
        self.setpoint: str = setpoint
        self.setpoint_readback = link.spelled(roles.get("setpoint_readback"))
        self.progress_attr = link.spelled(roles.get("progress"))
        self.stop_command = link.command_named(roles.get("stop"))
        self.moving_states = roles.states("moving_state") or {tango.DevState.MOVING}
        self.velocity = link.spelled(roles.get("velocity") or "velocity")
        self.acceleration = link.spelled(roles.get("acceleration") or "acceleration")
        self.fixed_timeout = float(roles.get("move_timeout")) if roles.get("move_timeout") else None
        self.tolerance_role = roles.get("tolerance")
        self.readback_type = link.attribute_type(self.readback)
        self.setpoint_type = link.attribute_type(self.setpoint)
        self.status: MoveStatus | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._state: AttributeValue | None = None
        self._position: AttributeValue | None = None
        followed = ["State", self.readback] + ([self.progress_attr] if self.progress_attr else [])
        self._subscription = link.subscriber.subscribe(link.trl, followed, self._on_update, kinds=device.event_kinds)

    # ---- events --------------------------------------------------------------------------------
    def _on_update(self, update: AttributeUpdate) -> None:
        if update.error is not None:
            self._wake.set()
            return
        value = AttributeValue(update.value, update.quality, update.timestamp)
        name = update.attribute.lower()
        status = self.status
        if name == "state":
            if self._state is None or value.timestamp >= self._state.timestamp:
                self._state = value
        elif name == self.readback.lower():
            if self._position is not None and value.timestamp < self._position.timestamp:
                return  # older than what a confirming read already saw
            self._position = value
            self.link.remember(self.readback, value)
            reading = self.readback_type.to_bluesky(update.value)
            self.device.notify("readback", value=reading, timestamp=update.timestamp)
            if status is not None and not status.done:
                fraction = status.notify(reading)
                if not self.progress_attr and fraction is not None:
                    self.device.notify("progress", value=1 - fraction, max_value=1, done=False)
        elif self.progress_attr and name == self.progress_attr.lower() and status is not None:
            self.device.notify("progress", value=float(update.value), max_value=1, done=bool(status.done))
        self._wake.set()

    def moving(self) -> bool:
        state = self._state
        return state is not None and state.value in self.moving_states

    # ---- set / stop ----------------------------------------------------------------------------
    def set(self, value: Any, timeout: float | None = None) -> MoveStatus:
        target = self.setpoint_type.to_tango(value)  # a wrong type raises here, before anything moves
        names = [self.readback] + [n for n in (self.velocity, self.acceleration) if n]
        unanswered = None
        try:
            before = self.link.read(names)
        except TangoTimeoutError as exc:  # the device is silent: writing would only wait again
            before, unanswered = {}, exc
        except TangoDeviceError:
            before = {}
        initial = before[self.readback].value if self.readback in before else None
        reading_initial = self.readback_type.to_bluesky(initial)
        status = MoveStatus(
            self.device,
            self.setpoint_type.to_bluesky(target),
            reading_initial,
            self.readback_type.unit,
            self.readback_type.precision,
        )
        with self._lock:
            previous, self.status = self.status, status
        if previous is not None and not previous.done:
            previous.set_exception(MoveFailed(f"{self.device.name}: move to {previous.target} superseded"))
        if unanswered is not None:
            status.set_exception(
                MoveFailed(f"{self.device.name}: move to {value!r} not started: {unanswered}", unanswered.reason)
            )
            return status
        try:
            self.link.write(self.setpoint, target)
        except TangoDeviceError as exc:
            status.set_exception(
                MoveFailed(f"{self.device.name}: move to {value!r} refused by {self.link.key}: {exc}", exc.reason)
            )
            return status
        limit = timeout if timeout is not None else self._timeout(initial, target, before)
        threading.Thread(
            target=self._watch, args=(status, target, limit), name=f"move:{self.device.name}", daemon=True
        ).start()
        return status

    def _timeout(self, initial: Any, target: Any, before: dict[str, AttributeValue]) -> float:
        """distance / velocity + ramps, with a 50 % margin and room for Tango calls."""
        if self.fixed_timeout is not None:
            return self.fixed_timeout
        try:
            distance = abs(float(target) - float(initial))
            velocity = abs(float(before[self.velocity].value)) if self.velocity else 0.0
        except (KeyError, TypeError, ValueError):
            return DEFAULT_MOVE_TIMEOUT
        if not velocity or not math.isfinite(velocity):
            return DEFAULT_MOVE_TIMEOUT
        duration = distance / velocity
        if self.acceleration and self.acceleration in before:
            with_ramps = abs(float(before[self.acceleration].value))
            if with_ramps and math.isfinite(with_ramps):
                duration += velocity / with_ramps
        return 1.5 * duration + 2.0 + 2 * self.link.timeout

    def tolerance(self) -> float:
        role = self.tolerance_role
        if role is not None:
            try:
                return float(role)
            except ValueError:
                attribute = self.link.spelled(role)
                if attribute is None:
                    raise ValueError(f"{self.link.key}: tolerance role {role!r} is no number nor attribute") from None
                return abs(float(self.link.read_one(attribute).value))
        precision = self.readback_type.precision
        return 10.0**-precision if precision is not None else 1e-9

    def stop(self, success: bool = False) -> None:
        status = self.status
        if status is not None and not status.done:
            status.stop_requested, status.stop_success = True, success
        if self.stop_command:
            self.link.command(self.stop_command)
        self._wake.set()

    # ---- watching ------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[tango.DevState, AttributeValue]:
        """State and readback, read now (one round trip): the final word is never an old event."""
        values = self.link.read(["State", self.readback])
        self._state, self._position = values["State"], values[self.readback]
        return values["State"].value, values[self.readback]

    def _at_target(self, position: Any, target: Any, tolerance: float) -> bool:
        try:
            return abs(float(position) - float(target)) <= tolerance
        except (TypeError, ValueError):
            return position == target

    def _watch(self, status: MoveStatus, target: Any, limit: float) -> None:
        name = self.device.name
        deadline = Deadline(limit)
        grace = Deadline(START_GRACE)
        started = False
        tolerance = self.tolerance()
        next_check = 0.0  # confirm by reading at once, then when events say "settled" or every SAFETY_PERIOD
        failing_since: float | None = None
        first_error: TangoDeviceError | None = None  # the most telling: later ones say "delayed"
        while not status.done:
            now = time.monotonic()
            if now >= next_check or not self.moving():
                try:
                    state, position = self._snapshot()
                except TangoDeviceError as exc:
                    failing_since, first_error = failing_since or now, first_error or exc
                    hung = isinstance(exc, TangoTimeoutError)  # it waited the link's timeout already
                    if hung or deadline.expired or time.monotonic() - failing_since >= UNREACHABLE_GRACE:
                        status.set_exception(
                            MoveFailed(
                                f"{name}: lost the device during the move to {target}: {first_error}",
                                first_error.reason,
                            )
                        )
                        self._stop_quietly()  # after: a hung server must not hold the Status
                        return
                    deadline.pause(0.2, self._wake)
                    continue
                failing_since, first_error = None, None
                next_check = now + SAFETY_PERIOD
                moving = state in self.moving_states or position.quality == tango.AttrQuality.ATTR_CHANGING
                started = started or moving
                if state == tango.DevState.FAULT:
                    status.set_exception(MoveFailed(f"{name}: FAULT while moving to {target}: {self._status_text()}"))
                    return
                if not moving:
                    reading = self.readback_type.to_bluesky(position.value)
                    if self._at_target(position.value, target, tolerance):
                        status.notify(reading)
                        self._finish(status, state)
                        return
                    if status.stop_requested:
                        if status.stop_success:
                            status.set_finished()
                        else:
                            status.set_exception(MoveFailed(f"{name}: stopped at {reading} before reaching {target}"))
                        return
                    if state == tango.DevState.ALARM or started or grace.expired:
                        status.set_exception(
                            MoveFailed(
                                f"{name}: stopped at {reading}, {target} not reached "
                                f"(State {state}: {self._status_text()})"
                            )
                        )
                        return
            if deadline.expired:
                self._stop_quietly()
                status.set_exception(
                    TangoTimeoutError(
                        f"{name}: not at {target} after {limit:.1f} s (at "
                        f"{self.readback_type.to_bluesky(self._position.value) if self._position else '?'}, "
                        f"State {self._state.value if self._state else '?'}); stop sent"
                    )
                )
                return
            deadline.pause(SAFETY_PERIOD, self._wake)

    def _finish(self, status: MoveStatus, state: tango.DevState) -> None:
        if state == tango.DevState.ALARM:
            logger.warning("%s reached its target in ALARM: %s", self.device.name, self._status_text())
        status.set_finished()
        self.device.notify("progress", value=1, max_value=1, done=True)

    def _status_text(self) -> str:
        try:
            return str(self.link.read_one("Status").value).strip()
        except TangoDeviceError as exc:
            return f"(Status unreadable: {exc})"

    def _stop_quietly(self) -> None:
        if self.stop_command:
            try:
                self.link.command(self.stop_command)
            except TangoDeviceError as exc:
                logger.warning("%s: stop after a timeout failed: %s", self.device.name, exc)

    def close(self) -> None:
        self._subscription.close()
