"""Standard Sardana macros on our devices: real Pool and MacroServer, macros run through the Door."""

import re
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the Pilatus files may use the bitshuffle filter)
import numpy as np
import pytest
import tango

from tango_servers.stack.waiting import wait_until

POSITION_TOLERANCE = 1e-3


def scan_entry(run, layout) -> h5py.Group:
    """The NXentry the scan `run` wrote in the stack's scan file (opened read-only)."""
    number = re.search(r"Scan #(\d+) started", run.text)
    assert number, f"no scan number in the macro output:\n{run.text}"
    assert f"Operation saved in {Path(layout.scan_dir) / layout.scan_file}" in run.text, run.text
    scan_file = h5py.File(Path(layout.scan_dir) / layout.scan_file, "r")
    return scan_file[f"entry{number.group(1)}"]


def recorded_frames(measurement: h5py.Group, name: str, points: int, rows: int = 160, columns: int = 200) -> np.ndarray:
    """The frames Sardana's NXscan recorder mapped into its virtual dataset `name`.

    sardana-limaccd gives the channel's shape as [image_width, image_height] and the recorder lays
    the dataset out as (points, shape[0], shape[1]): the pixels are all there, in order, under a
    transposed shape (see docs/sardana.md); they are read back with the detector's own shape.
    """
    dataset = measurement[name]
    assert dataset.is_virtual, f"{name}: the frames are referenced, not copied, into the scan file"
    assert dataset.shape == (points, columns, rows)
    return dataset[:].reshape(points, rows, columns)


def referenced_frame(reference: str) -> np.ndarray:
    """The frame a Pilatus value reference (h5file://path::dataset) points at."""
    match = re.fullmatch(r"h5file://(?P<path>[^:]+)::(?P<dataset>.+)", reference)
    assert match, f"not an h5file reference: {reference}"
    with h5py.File(match["path"], "r") as f:
        return f[match["dataset"]][0]


def test_wa_shows_every_axis_at_its_tango_position(sardana_stack, door):
    run = door.run("wa")
    # wa prints the motors in blocks of four: a line of names, then their User and Dial positions.
    positions = {}
    for header, user in zip(run.output, run.output[1:], strict=False):
        if user.startswith("User"):
            positions.update(zip(header.split(), (float(v) for v in user.split()[1:]), strict=True))
    assert set(positions) == {"x", "y", "z", "omega", "pilatus_threshold", "pilatus_energy"}
    for name in ("x", "y", "z", "omega"):
        tango_position = sardana_stack.proxy(f"sim/aerotech/{name}").read_attribute("position").value
        assert positions[name] == pytest.approx(tango_position, abs=1e-3)
    camera = sardana_stack.proxy("sim/pilatus_cam/1")
    assert positions["pilatus_threshold"] == camera.threshold
    assert positions["pilatus_energy"] == pytest.approx(camera.energy_threshold, abs=1e-6)


def test_mv_moves_the_aerotech_axis(sardana_stack, door):
    axis = sardana_stack.proxy("sim/aerotech/x")
    motor = sardana_stack.proxy("x")  # the Sardana motor, by its alias
    door.run("mv", "x", 1.25, timeout=30)
    assert axis.read_attribute("position").value == pytest.approx(1.25, abs=POSITION_TOLERANCE)
    assert motor.read_attribute("Position").value == pytest.approx(1.25, abs=POSITION_TOLERANCE)
    assert axis.state() == tango.DevState.STANDBY
    assert motor.state() == tango.DevState.ON
    door.run("mv", "x", 0, timeout=30)
    assert axis.read_attribute("position").value == pytest.approx(0, abs=POSITION_TOLERANCE)


def test_mv_outside_the_soft_limits_is_refused_and_nothing_moves(sardana_stack, door):
    axis = sardana_stack.proxy("sim/aerotech/y")
    beyond = axis.read_attribute("soft_limit_high").value + 1
    before = axis.read_attribute("position").value
    run = door.run("mv", "y", beyond, timeout=30, check=False)
    assert run.state == "exception"
    assert "limit" in run.text.lower()
    assert axis.read_attribute("position").value == pytest.approx(before, abs=POSITION_TOLERANCE)


def test_ct_takes_one_pilatus_frame_and_its_roi_sum(door):
    run = door.run("ct", 0.1, timeout=30)
    values = dict(re.findall(r"^\s*(\w+)\s+=\s+(\S+)\s*$", "\n".join(run.output), flags=re.M))
    reference, roi = values["pilatus_image"], float(values["pilatus_roi"])
    frame = referenced_frame(reference)
    assert frame.shape == (160, 200)
    assert roi > 0
    assert roi == pytest.approx(np.clip(frame, 0, None).sum())


def test_ascan_over_omega_records_the_pilatus_peak(sardana_stack, door, layout):
    run = door.run("ascan", "omega", -3, 3, 12, 0.1, timeout=120)
    entry = scan_entry(run, layout)
    with entry.file:
        measurement = entry["measurement"]
        omega = measurement["omega"][:]
        roi = measurement["pilatus_roi"][:]
        frames = recorded_frames(measurement, "pilatus_image", 13)
        for point, frame in enumerate(frames):
            assert np.clip(frame, 0, None).sum() == pytest.approx(roi[point]), f"point {point}"
        assert np.allclose(omega, np.linspace(-3, 3, 13), atol=POSITION_TOLERANCE)
    peak = int(np.argmax(roi))
    assert omega[peak] == pytest.approx(0.0, abs=0.5), f"peak at omega={omega[peak]}, counts {roi}"
    assert roi[peak] > 2 * max(roi[0], roi[-1]), f"no peak over the background: {roi}"
    assert sardana_stack.proxy("sim/pilatus/1").acq_status == "Ready"


def test_a_scan_records_each_point_s_frame_whatever_frames_per_file_another_client_left(sardana_stack, door, layout):
    """Sardana's recorder maps each frame reference as the first frame of its file: the general
    pre-scan hook `lima_one_frame_per_file` sets the detector back to one frame per file."""
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    pilatus.saving_frame_per_file = 1000  # as a bluesky plan may leave it (notebook 04)
    run = door.run("ascan", "omega", -1, 1, 4, 0.05, timeout=120)
    assert "saving_frame_per_file 1000 -> 1" in run.text, run.text
    assert pilatus.saving_frame_per_file == 1
    entry = scan_entry(run, layout)
    with entry.file:
        measurement = entry["measurement"]
        roi = measurement["pilatus_roi"][:]
        sources = {source.file_name for source in measurement["pilatus_image"].virtual_sources()}
        frames = recorded_frames(measurement, "pilatus_image", 5)
    assert len(sources) == 5, sources
    for point, frame in enumerate(frames):
        assert np.clip(frame, 0, None).sum() == pytest.approx(roi[point]), f"point {point}"


def test_dscan_is_relative_and_returns_to_the_start(sardana_stack, door, layout):
    door.run("mv", "z", 0.5, timeout=30)
    run = door.run("dscan", "z", -0.2, 0.2, 4, 0.05, timeout=120)
    entry = scan_entry(run, layout)
    with entry.file:
        z = entry["measurement"]["z"][:]
    assert np.allclose(z, np.linspace(0.3, 0.7, 5), atol=POSITION_TOLERANCE)
    assert sardana_stack.proxy("sim/aerotech/z").read_attribute("position").value == pytest.approx(
        0.5, abs=POSITION_TOLERANCE
    )
    door.run("mv", "z", 0, timeout=30)


def test_timescan_records_points_in_time(door, layout):
    run = door.run("timescan", 3, 0.1, timeout=60)
    entry = scan_entry(run, layout)
    with entry.file:
        measurement = entry["measurement"]
        elapsed = measurement["dt"][:]
        roi = measurement["pilatus_roi"][:]
    assert len(elapsed) == 3  # timescan's first parameter is the number of points
    assert np.all(np.diff(elapsed) >= 0.1 - 1e-6)
    assert np.all(roi > 0)


def test_abort_mid_scan_stops_the_axes_and_leaves_the_detector_ready(sardana_stack, door):
    omega = sardana_stack.proxy("sim/aerotech/omega")
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    door.run("mv", "omega", 0, timeout=60)
    # 3 points 90 deg apart: the moves take seconds, so the abort lands in the middle of one.
    run = door.start("ascan", "omega", 0, 180, 2, 0.1)
    wait_until(
        lambda: omega.read_attribute("position").value > 10 and omega.state() == tango.DevState.MOVING,
        30,
        message="omega moving to the second scan point",
    )
    door.abort()
    run.wait(20)
    assert run.state == "abort"
    wait_until(lambda: omega.state() == tango.DevState.STANDBY, 5, message="omega at rest after the abort")
    stopped_at = omega.read_attribute("position").value
    assert 10 < stopped_at < 90, f"omega should stop short of the second point, is at {stopped_at}"
    for name in ("x", "y", "z", "omega"):
        assert sardana_stack.proxy(f"sim/aerotech/{name}").state() == tango.DevState.STANDBY
        assert sardana_stack.proxy(name).state() == tango.DevState.ON
    wait_until(
        lambda: pilatus.acq_status == "Ready",
        10,
        message="the Pilatus back to Ready after the abort",
    )
    assert pilatus.state() == tango.DevState.ON
    # The stack is usable again straight away.
    door.run("mv", "omega", 0, timeout=60)
    assert door.run("ct", 0.05, timeout=30).ok


def test_a_tango_lock_keeps_sardana_off_a_detector_another_client_owns(sardana_stack, door):
    """Ownership: sardana-limaccd aborts a detector that is not Ready before it measures
    (LimaCCDCtrl.PrepareOne); a client that must keep the detector takes a Tango lock."""
    pilatus = tango.DeviceProxy(sardana_stack.trl("sim/pilatus/1"))
    pilatus.set_timeout_millis(10_000)
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 2
    pilatus.acq_expo_time = 0.05
    pilatus.saving_mode = "MANUAL"
    pilatus.prepareAcq()
    pilatus.startAcq()  # frame 1 of 2: Running until its owner takes the second
    pilatus.lock()
    try:
        run = door.run("ct", 0.1, timeout=30, check=False)
        assert run.state == "exception"
        assert "lock" in run.text.lower(), run.text
        assert pilatus.acq_status == "Running", "the lock holder's acquisition goes on"
    finally:
        pilatus.abortAcq()
        pilatus.unlock()
        wait_until(lambda: pilatus.acq_status == "Ready", 10, message="the Pilatus back to Ready")
    assert door.run("ct", 0.05, timeout=30).ok


def test_pool_keeps_working_after_the_aerotech_server_restarts(sardana_stack, door):
    old_pid = sardana_stack.kill_server("Automation1/sim")
    sardana_stack.wait_server_back("Automation1/sim", old_pid)
    door.run("mv", "y", 0.3, timeout=60)
    assert sardana_stack.proxy("sim/aerotech/y").read_attribute("position").value == pytest.approx(
        0.3, abs=POSITION_TOLERANCE
    )
    door.run("mv", "y", 0, timeout=60)


def test_roi_sum_counts_only_its_region(sardana_stack, door):
    roi = sardana_stack.proxy("pilatus_roi")
    roi.write_attribute("RoI", [10, 60, 20, 80])
    try:
        run = door.run("ct", 0.05, timeout=30)
    finally:
        roi.write_attribute("RoI", [0, 0, 0, 0])
    values = dict(re.findall(r"^\s*(\w+)\s+=\s+(\S+)\s*$", "\n".join(run.output), flags=re.M))
    frame = referenced_frame(values["pilatus_image"])
    assert float(values["pilatus_roi"]) == pytest.approx(np.clip(frame[20:80, 10:60], 0, None).sum())
    with pytest.raises(tango.DevFailed, match="x0 < x1"):
        roi.write_attribute("RoI", [60, 10, 20, 80])


def test_a_pool_restart_restarts_the_macroserver_and_macros_work_again(sardana_stack, doors):
    macroserver_pid = sardana_stack.server_pid("MacroServer/tango_suite")
    pool_pid = sardana_stack.kill_server("Pool/tango_suite")
    sardana_stack.wait_server_back("Pool/tango_suite", pool_pid, timeout=120)
    # The MacroServer's subscriptions into the old Pool are stale: the supervisor restarts it.
    sardana_stack.wait_server_back("MacroServer/tango_suite", macroserver_pid, timeout=120)
    door = doors.current()
    assert door.run("ct", 0.05, timeout=60).ok
    door.run("mv", "x", 0.1, timeout=60)
    assert sardana_stack.proxy("sim/aerotech/x").read_attribute("position").value == pytest.approx(
        0.1, abs=POSITION_TOLERANCE
    )
    door.run("mv", "x", 0, timeout=60)


def test_oav_images_are_recorded_with_mntgrp_oav(door, layout):
    door.run("senv", "ActiveMntGrp", "mntgrp_oav")
    try:
        run = door.run("ascan", "x", 0, 0.2, 2, 0.05, timeout=120)
    finally:
        door.run("senv", "ActiveMntGrp", "mntgrp")
    entry = scan_entry(run, layout)
    with entry.file:
        images = entry["measurement"]["oav_image"][:]
        roi = entry["measurement"]["pilatus_roi"][:]
    assert images.shape == (3, 240, 320)
    assert images.dtype == np.uint8
    assert not np.array_equal(images[0], images[-1]), "the pin moves with x: the pictures differ"
    assert np.all(roi > 0)
    door.run("mv", "x", 0, timeout=30)
