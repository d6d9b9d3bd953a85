"""Checks every move must pass before anything moves; shared by the simulator and the program dry run."""

from __future__ import annotations

import math

from .backend import MotionError


def check_number(name: str, value: float, what: str) -> None:
    if not math.isfinite(value):
        raise MotionError("InvalidValue", f"{what} for axis {name} is {value}; give a finite number.")


def check_target(name: str, target: float, low: float, high: float, units: str) -> None:
    """Reject NaN/inf and targets outside [low, high], naming the limit that is violated."""
    check_number(name, target, "the target")
    if target < low:
        raise MotionError(
            "SoftLimitLow",
            f"target {target:g} {units} is below the soft limit low {low:g} {units} of axis {name}; nothing moved.",
        )
    if target > high:
        raise MotionError(
            "SoftLimitHigh",
            f"target {target:g} {units} is above the soft limit high {high:g} {units} of axis {name}; nothing moved.",
        )


def check_speed(name: str, speed: float, max_speed: float, units: str) -> None:
    check_number(name, speed, "the speed")
    if speed <= 0:
        raise MotionError("InvalidSpeed", f"speed {speed:g} {units}/s for axis {name} must be positive.")
    if speed > max_speed:
        raise MotionError(
            "SpeedTooHigh",
            f"speed {speed:g} {units}/s for axis {name} exceeds its maximum velocity {max_speed:g} {units}/s.",
        )


def check_can_move(name: str, enabled: bool, faults: tuple[str, ...]) -> None:
    """Reject a move on a faulted or disabled axis, with the way out."""
    if faults:
        raise MotionError(
            "AxisFaulted",
            f"axis {name} is faulted ({', '.join(faults)}); acknowledge with FaultAck before moving.",
        )
    if not enabled:
        raise MotionError("AxisDisabled", f"axis {name} is disabled; Enable it before moving.")
