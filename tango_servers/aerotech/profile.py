"""Trapezoidal motion profiles as exact piecewise-quadratic functions of time.

A `Motion` is a list of constant-acceleration `Segment`s ending at rest on `target`. Positions
are evaluated analytically, so the simulator's step size never changes where an axis is, when a
move ends or where a PSO pulse falls.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Segment:
    """x(t) = p0 + v0 (t - t0) + a (t - t0)^2 / 2 for t0 <= t <= t0 + duration."""

    t0: float
    duration: float
    p0: float
    v0: float
    a: float

    @property
    def t1(self) -> float:
        return self.t0 + self.duration

    def position(self, t: float) -> float:
        dt = t - self.t0
        return self.p0 + self.v0 * dt + 0.5 * self.a * dt * dt

    def velocity(self, t: float) -> float:
        return self.v0 + self.a * (t - self.t0)


@dataclass(frozen=True, slots=True)
class Motion:
    """A planned move: segments back to back from `start_time`, at rest on `target` afterwards."""

    segments: tuple[Segment, ...]
    target: float

    @property
    def start_time(self) -> float:
        return self.segments[0].t0

    @property
    def end_time(self) -> float:
        return self.segments[-1].t1

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    def _segment(self, t: float) -> Segment | None:
        for seg in self.segments:
            if t <= seg.t1:
                return seg
        return None

    def position(self, t: float) -> float:
        if t <= self.start_time:
            return self.segments[0].p0
        seg = self._segment(t)
        return self.target if seg is None or t >= self.end_time else seg.position(t)

    def velocity(self, t: float) -> float:
        if t <= self.start_time or t >= self.end_time:
            return 0.0 if t >= self.end_time else self.segments[0].v0
        seg = self._segment(t)
        return 0.0 if seg is None else seg.velocity(t)

    def positions(self, times: np.ndarray, ref: float = 0.0) -> np.ndarray:
        """Vectorised `position` at `ref + times`.

        Give times relative to a nearby `ref` for full precision: an absolute epoch time in a
        double resolves only ~0.2 us, which is a micrometre at a few mm/s.
        """
        starts = np.array([s.t0 - ref for s in self.segments])
        idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(self.segments) - 1)
        p0 = np.array([s.p0 for s in self.segments])[idx]
        v0 = np.array([s.v0 for s in self.segments])[idx]
        a = np.array([s.a for s in self.segments])[idx]
        dt = np.maximum(times - starts[idx], 0.0)
        out = p0 + v0 * dt + 0.5 * a * dt * dt
        return np.where(times >= self.end_time - ref, self.target, out)

    def progress(self, t: float) -> float:
        if self.duration <= 0:
            return 1.0
        return min(1.0, max(0.0, (t - self.start_time) / self.duration))

    def monotonic_pieces(self, t_a: float, t_b: float) -> Iterator[tuple[float, float, float, float, float]]:
        """Pieces of the motion inside [t_a, t_b] on which position is monotonic.

        Yields (t_start, t_end, x_start, v_start, a): a piece starts at x_start with velocity
        v_start (zero or of the piece's direction) and constant acceleration a. The last piece
        of the motion ends exactly on `target`.
        """
        for seg in self.segments:
            lo, hi = max(t_a, seg.t0), min(t_b, seg.t1)
            if hi <= lo:
                continue
            cuts = [lo, hi]
            if seg.a != 0.0:
                t_rev = seg.t0 - seg.v0 / seg.a  # velocity crosses zero here
                if lo < t_rev < hi:
                    cuts = [lo, t_rev, hi]
            for start, end in itertools.pairwise(cuts):
                yield start, end, seg.position(start), seg.velocity(start), seg.a


def stopping_motion(t: float, position: float, velocity: float, deceleration: float) -> Motion | None:
    """Decelerate from `velocity` to rest; None when already at rest."""
    if abs(velocity) <= _EPS:
        return None
    duration = abs(velocity) / deceleration
    seg = Segment(t, duration, position, velocity, -math.copysign(deceleration, velocity))
    return Motion((seg,), seg.position(seg.t1))


def plan_move(
    t: float, position: float, velocity: float, target: float, max_speed: float, acceleration: float
) -> Motion | None:
    """The time-optimal trapezoid from (position, velocity) at time t to rest on `target`.

    Ramps use `acceleration`, the cruise runs at `max_speed`. Starting while moving away from
    the target (or too fast to stop in time) first decelerates to rest. None when nothing moves.
    """
    segments: list[Segment] = []
    distance = target - position
    if abs(velocity) > _EPS:
        stop = velocity * velocity / (2.0 * acceleration)
        if math.copysign(1.0, velocity) != math.copysign(1.0, distance) or stop > abs(distance) + _EPS:
            first = stopping_motion(t, position, velocity, acceleration)
            assert first is not None
            segments.extend(first.segments)
            t, position, velocity = first.end_time, first.target, 0.0
            distance = target - position
    if abs(distance) <= _EPS:
        return Motion(tuple(segments), target) if segments else None
    sign = math.copysign(1.0, distance)
    span = abs(distance)
    speed = abs(velocity)
    peak = min(max_speed, math.sqrt(acceleration * span + 0.5 * speed * speed))
    ramp1 = abs(peak - speed) / acceleration
    dist1 = abs(peak * peak - speed * speed) / (2.0 * acceleration)
    dist3 = peak * peak / (2.0 * acceleration)
    cruise = max(0.0, span - dist1 - dist3) / peak
    ramp3 = peak / acceleration
    p = position
    if ramp1 > _EPS:
        seg = Segment(t, ramp1, p, sign * speed, sign * math.copysign(acceleration, peak - speed))
        segments.append(seg)
        t, p = seg.t1, seg.position(seg.t1)
    if cruise > _EPS:
        seg = Segment(t, cruise, p, sign * peak, 0.0)
        segments.append(seg)
        t, p = seg.t1, seg.position(seg.t1)
    segments.append(Segment(t, ramp3, p, sign * peak, -sign * acceleration))
    return Motion(tuple(segments), target)


def move_duration(distance: float, max_speed: float, acceleration: float) -> float:
    """Duration of a move of `distance` from rest to rest."""
    motion = plan_move(0.0, 0.0, 0.0, distance, max_speed, acceleration)
    return 0.0 if motion is None else motion.duration


def scaled(path: Motion, origin: float, scale: float, target: float) -> Motion:
    """The motion of one axis of a coordinated move: origin + scale * s(t) along a path s(t)."""
    segments = tuple(Segment(s.t0, s.duration, origin + scale * s.p0, scale * s.v0, scale * s.a) for s in path.segments)
    return Motion(segments, target)
