"""murko's metadata fields: omega extrapolated to a frame's time, the sample id's type."""

import pytest

from bridges.redis._forwarder import murko_sample_id, omega_at


def test_omega_is_extrapolated_from_the_last_two_readings_to_the_frame_time():
    assert omega_at([], 5.0) is None
    assert omega_at([(10.0, 1.0)], 5.0) == 10.0
    # 10 deg/s: from 20 deg at t=2 to the frame at t=2.5
    assert omega_at([(10.0, 1.0), (20.0, 2.0)], 2.5) == pytest.approx(25.0)
    assert omega_at([(10.0, 2.0), (20.0, 2.0)], 3.0) == 20.0, "two readings at one time: no rate"


def test_a_numeric_sample_id_is_an_int_as_in_mx_bluesky_runs():
    assert murko_sample_id("4711") == 4711
    assert murko_sample_id("pin-3") == "pin-3"
