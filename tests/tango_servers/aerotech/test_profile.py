import math

import numpy as np
import pytest

from tango_servers.aerotech.profile import move_duration, plan_move, stopping_motion


def test_trapezoid_duration_and_shape():
    motion = plan_move(0.0, 0.0, 0.0, 10.0, 5.0, 100.0)
    assert motion is not None
    # 0.05 s ramps (0.125 mm each) and a cruise of 9.75 mm at 5 mm/s
    assert motion.duration == pytest.approx(10 / 5 + 5 / 100)
    assert [s.a for s in motion.segments] == [100.0, 0.0, -100.0]
    assert motion.position(motion.end_time) == 10.0
    assert motion.position(0.05) == pytest.approx(0.125)
    assert motion.velocity(1.0) == pytest.approx(5.0)


def test_short_move_is_a_triangle():
    motion = plan_move(0.0, 0.0, 0.0, 0.01, 5.0, 100.0)
    assert motion is not None
    peak = math.sqrt(100.0 * 0.01)
    assert motion.duration == pytest.approx(2 * peak / 100.0)
    assert max(abs(motion.velocity(t)) for t in np.linspace(0, motion.duration, 101)) <= peak + 1e-12


def test_new_target_behind_a_moving_axis_stops_first_then_returns():
    motion = plan_move(0.0, 5.0, 5.0, 4.0, 5.0, 100.0)
    assert motion is not None
    assert motion.segments[0].a == -100.0  # decelerate first
    times = np.linspace(0, motion.duration, 2001)
    positions = motion.positions(times)
    assert positions.max() == pytest.approx(5.0 + 25 / 200)
    assert positions[-1] == 4.0


def test_positions_are_continuous_and_vectorised_evaluation_matches():
    motion = plan_move(3.0, -1.0, 0.0, 7.0, 4.0, 20.0)
    assert motion is not None
    times = np.linspace(2.5, motion.end_time + 1, 5000)
    vector = motion.positions(times)
    scalar = np.array([motion.position(t) for t in times])
    np.testing.assert_allclose(vector, scalar, atol=1e-12)
    assert np.abs(np.diff(vector)).max() < 4.0 * (times[1] - times[0]) + 1e-9


def test_stopping_motion_and_move_duration():
    stop = stopping_motion(1.0, 2.0, -5.0, 1000.0)
    assert stop is not None
    assert stop.duration == pytest.approx(0.005)
    assert stop.target == pytest.approx(2.0 - 25 / 2000)
    assert stopping_motion(1.0, 2.0, 0.0, 1000.0) is None
    assert move_duration(0.0, 1.0, 1.0) == 0.0
