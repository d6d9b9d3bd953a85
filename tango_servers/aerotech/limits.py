"""Checks every move must pass before anything moves; shared by the simulator and the program dry run."""

from __future__ import annotations

import math

from .backend import MotionError

MAX_PULSE_RATE = 1e6  # PSO pulses per second the controller (and one event per pulse) can sustain
MAX_PULSES_PER_EVENT = 10_000  # so no per-event payload grows with a slow worker step
MAX_CAPTURE = 1_000_000  # pulses captured per arm: the max_dim_x of the captured spectra
MAX_DWELL = 86_400.0  # seconds: a day; anything longer is a typo that would wedge the task


def min_pso_distance(resolution: float, max_velocity: float) -> float:
    """The finest PSO distance: one encoder count, and no faster than MAX_PULSE_RATE at full speed."""
    return max(resolution, max_velocity / MAX_PULSE_RATE)


def check_pso_distance(name: str, distance: float, resolution: float, max_velocity: float, units: str) -> None:
    """Reject a PSO distance the controller cannot fire at, naming the minimum."""
    check_number(name, distance, "the PSO distance")
    if distance <= 0:
        raise MotionError("InvalidPsoDistance", f"PSO distance {distance:g} must be positive.")
    minimum = min_pso_distance(resolution, max_velocity)
    if distance < minimum:
        raise MotionError(
            "PsoDistanceTooSmall",
            f"PSO distance {distance:g} {units} for axis {name} is below the minimum {minimum:g} {units} "
            f"(encoder resolution {resolution:g} {units}, at most {MAX_PULSE_RATE:g} pulses/s at "
            f"{max_velocity:g} {units}/s).",
        )


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
