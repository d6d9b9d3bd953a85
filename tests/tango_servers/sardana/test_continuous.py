"""Hardware-triggered continuous scans: `ascanct` with the Automation1 PSO triggering the Pilatus.

The Pool's Automation1PsoTriggerGateController arms the PSO; sardana-limaccd's LimaCCD controller
puts the Pilatus in EXTERNAL_TRIGGER_MULTI (Trigger) or EXTERNAL_GATE (Gate), one frame per pulse.
"""

import numpy as np
import pytest
import tango

from tango_servers.stack.waiting import wait_until

from .test_macros import recorded_frames, scan_entry

INTERVALS, EXPOSURE = 8, 0.02


@pytest.fixture
def pso_mntgrp(door):
    door.run("senv", "ActiveMntGrp", "mntgrp_pso")
    yield "mntgrp_pso"
    door.run("set_meas_conf", "synchronization", "Trigger", "pilatus_image", "mntgrp_pso")
    door.run("senv", "ActiveMntGrp", "mntgrp")


@pytest.mark.parametrize(
    ("synchronization", "trigger_mode", "start", "stop"),
    [("Trigger", "EXTERNAL_TRIGGER_MULTI", -2.0, 2.0), ("Gate", "EXTERNAL_GATE", 2.0, -2.0)],
)
def test_ascanct_takes_one_pilatus_frame_per_pso_pulse_at_each_point(
    sardana_stack, door, layout, pso_mntgrp, synchronization, trigger_mode, start, stop
):
    points = np.linspace(start, stop, INTERVALS + 1)
    door.run("set_meas_conf", "synchronization", synchronization, "pilatus_image", pso_mntgrp)
    run = door.run("ascanct", "omega", start, stop, INTERVALS, EXPOSURE, timeout=180)
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    assert pilatus.acq_trigger_mode == trigger_mode
    assert pilatus.acq_status == "Ready"
    # The PSO fired exactly at the scan points: the controller latched omega at every pulse.
    captured = sardana_stack.proxy("sim/aerotech/ctrl").read_attribute("captured_positions_omega").value
    assert np.allclose(captured, points, atol=1e-6), captured
    entry = scan_entry(run, layout)
    with entry.file:
        measurement = entry["measurement"]
        frames = recorded_frames(measurement, "pilatus_image", len(points))
        # The frames themselves (the channel's values are not read in hardware synchronization: see docs/sardana.md).
        counts = np.array([np.clip(frame, 0, None).sum() for frame in frames])
        assert np.allclose(measurement["omega"][:], points, atol=1e-6)
    peak = int(np.argmax(counts))
    assert points[peak] == pytest.approx(0.0, abs=0.5), f"peak at omega={points[peak]}, counts {counts}"
    assert counts[peak] > 2 * max(counts[0], counts[-1]), f"no peak over the background: {counts}"
    assert not sardana_stack.proxy("sim/aerotech/ctrl").read_attribute("pso_armed").value


def test_ascanct_after_another_client_left_many_frames_per_file_still_shows_the_peak(
    sardana_stack, door, layout, pso_mntgrp
):
    """Notebook 04's case: a bluesky scan left saving_frame_per_file at 1000. Without the general
    pre-scan hook every reference named the same file and the scan file held its first frame 9 times."""
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    pilatus.saving_frame_per_file = 1000
    points = np.linspace(-2.0, 2.0, INTERVALS + 1)
    run = door.run("ascanct", "omega", -2.0, 2.0, INTERVALS, EXPOSURE, timeout=180)
    assert "saving_frame_per_file 1000 -> 1" in run.text, run.text
    entry = scan_entry(run, layout)
    with entry.file:
        frames = recorded_frames(entry["measurement"], "pilatus_image", len(points))
    counts = np.array([np.clip(frame, 0, None).sum() for frame in frames])
    peak = int(np.argmax(counts))
    assert points[peak] == pytest.approx(0.0, abs=0.5), f"peak at omega={points[peak]}, counts {counts}"
    assert counts[peak] > 2 * max(counts[0], counts[-1]), f"no peak over the background: {counts}"


def test_a_time_scan_cannot_use_the_pso(sardana_stack, door, pso_mntgrp):
    run = door.run("timescan", 2, 0.05, timeout=60, check=False)
    assert run.state == "exception"
    assert "Position-domain synchronization" in run.text, run.text
    assert not sardana_stack.proxy("sim/aerotech/ctrl").read_attribute("pso_armed").value
    stop_the_refused_measurement(sardana_stack, pso_mntgrp)


def test_the_pso_of_another_axis_is_refused_and_that_axis_stays(sardana_stack, door, pso_mntgrp):
    x = sardana_stack.proxy("sim/aerotech/x")
    before = x.read_attribute("position").value
    door.run("set_meas_conf", "synchronizer", "pso_x", "pilatus_image", pso_mntgrp)
    try:
        run = door.run("ascanct", "omega", -2.0, 2.0, INTERVALS, EXPOSURE, timeout=180, check=False)
    finally:
        door.run("set_meas_conf", "synchronizer", "pso_omega", "pilatus_image", pso_mntgrp)
    assert run.state == "exception"
    assert "must be the one of the scanned motor" in run.text, run.text
    assert x.read_attribute("position").value == before
    stop_the_refused_measurement(sardana_stack, pso_mntgrp)


def stop_the_refused_measurement(sardana_stack, mntgrp: str) -> None:
    """The Pool starts hardware-synchronized channels before their synchronizer and does not stop
    them when it refuses: the measurement group stays Moving (sardana-limaccd still counts the
    frames it was asked for) until it is stopped, as a user does with its Stop command."""
    group = tango.DeviceProxy(
        sardana_stack.trl(tango.Database(*sardana_stack.tango_host.split(":")).get_device_alias(mntgrp))
    )
    group.set_timeout_millis(10_000)
    assert group.state() == tango.DevState.MOVING
    group.Stop()
    wait_until(lambda: group.state() == tango.DevState.ON, 10, message=f"{mntgrp} On after Stop")
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="the Pilatus back to Ready")
