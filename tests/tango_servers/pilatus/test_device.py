"""The Pilatus server on a real Tango database, driven as a LimaCCDs client drives it."""

import json
import resource

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import tango

from tango_servers.stack.waiting import wait_until

DATA = "/entry_0000/measurement/data"


def wait_ready(proxy: tango.DeviceProxy, timeout: float = 10.0) -> None:
    wait_until(lambda: proxy.acq_status == "Ready", timeout, message="acq_status Ready")


def test_internal_trigger_writes_nexus_file(pilatus, events, tmp_path):
    files = events["file_event"]
    files.clear()
    pilatus.acq_nb_frames = 10
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_ready(pilatus)
    assert pilatus.last_image_saved == 9
    wait_until(lambda: len(files) >= 2, 5, message="file_event open and close")
    opened, closed = (json.loads(value) for value in files)
    path = tmp_path / "scan_0000.h5"
    assert opened == {
        "file_path": str(path),
        "file_type": "h5",
        "hinted_location": {"data": DATA},
        "done": False,
        "success": False,
    }
    assert closed == {**opened, "done": True, "success": True}
    with h5py.File(path, "r") as f:
        data = f[DATA]
        assert data.shape == (10, pilatus.image_height, pilatus.image_width)
        assert data.dtype == np.int32
        assert f["/entry_0000"].attrs["NX_class"] == "NXentry"
        assert f["/entry_0000/instrument"].attrs["NX_class"] == "NXinstrument"
        assert f["/entry_0000/instrument/Pilatus"].attrs["NX_class"] == "NXdetector"
        assert f["/entry_0000/instrument/Pilatus/count_time"][()] == 0.01
        assert f["/entry_0000/instrument/Pilatus/trigger_mode"][()] == b"INTERNAL_TRIGGER"
        assert data.chunks == (1, *data.shape[1:])
        assert "32008" in data._filters  # bitshuffle
        assert (data[0][:, 60:65] == -1).all()  # module gap
    assert pilatus.saving_next_number == 1


def saved_frames(path) -> int:
    with h5py.File(path, "r", swmr=True) as f:
        return f[DATA].shape[0]


def test_each_start_takes_exactly_one_frame_in_internal_trigger_multi(pilatus, tmp_path):
    """Lima's IntTrigMult: every startAcq takes one frame, the first one included; softTrigger
    takes one more while the acquisition runs."""
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 4
    pilatus.prepareAcq()
    assert pilatus.last_image_acquired == -1  # prepared: no frame before the first startAcq
    for i, take_frame in enumerate((pilatus.startAcq, pilatus.startAcq, pilatus.softTrigger, pilatus.startAcq)):
        take_frame()
        assert pilatus.acq_status == "Running" or i == 3
        wait_until(lambda i=i: pilatus.last_image_saved == i, 5, message=f"frame {i} saved")
        assert pilatus.last_image_acquired == i
    wait_ready(pilatus)
    assert saved_frames(tmp_path / "scan_0000.h5") == 4
    try:
        pilatus.softTrigger()
        raise AssertionError("softTrigger outside an acquisition must be refused")
    except tango.DevFailed as exc:
        assert "INTERNAL_TRIGGER_MULTI" in exc.args[0].desc


def test_internal_trigger_multi_until_stopped(pilatus, tmp_path):
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 0
    pilatus.prepareAcq()
    for i in range(3):
        pilatus.startAcq()
        wait_until(lambda i=i: pilatus.last_image_saved == i, 5, message=f"frame {i} saved")
    pilatus.stopAcq()
    wait_ready(pilatus)
    assert saved_frames(tmp_path / "scan_0000.h5") == 3


def test_changes_refused_during_acquisition(pilatus):
    pilatus.acq_nb_frames = 0
    pilatus.prepareAcq()
    pilatus.startAcq()
    try:
        assert "stopAcq" in refused(lambda: setattr(pilatus, "acq_expo_time", 0.5))
        assert "stopAcq" in refused(lambda: setattr(pilatus, "saving_prefix", "other_"))
        pilatus.acq_expo_time = 0.01  # the value it has: accepted
    finally:
        pilatus.stopAcq()
    wait_ready(pilatus)


def refused(call) -> str:
    try:
        call()
    except tango.DevFailed as exc:
        return exc.args[0].desc
    raise AssertionError(f"{call} was not refused")


def test_bad_saving_directory_is_refused_by_prepare(pilatus, tmp_path):
    pilatus.saving_directory = str(tmp_path / "missing")
    assert "does not exist" in refused(pilatus.prepareAcq)
    (tmp_path / "a_file").write_text("")
    pilatus.saving_directory = str(tmp_path / "a_file")
    assert "not a directory" in refused(pilatus.prepareAcq)
    assert "absolute" in refused(lambda: setattr(pilatus, "saving_directory", "relative/dir"))
    assert pilatus.acq_status == "Ready"
    assert "prepareAcq" in refused(pilatus.startAcq)


def test_existing_file_refused_unless_overwrite(pilatus, tmp_path):
    (tmp_path / "scan_0000.h5").write_text("precious")
    assert "already exists" in refused(pilatus.prepareAcq)
    pilatus.saving_overwrite_policy = "OVERWRITE"
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_ready(pilatus)
    assert saved_frames(tmp_path / "scan_0000.h5") == 1


def test_failure_during_acquisition_faults_and_keeps_frames(pilatus, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    pilatus.saving_directory = str(directory)
    pilatus.saving_frame_per_file = 2
    pilatus.acq_nb_frames = 6
    pilatus.prepareAcq()
    # The first file is open; taking its directory away makes the second file impossible.
    moved = directory.rename(tmp_path / "moved")
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Fault", 10, message="acq_status Fault")
    assert pilatus.state() == tango.DevState.FAULT
    assert "scan_0001.h5" in pilatus.status() and "No such file" in pilatus.status()
    assert "scan_0001.h5" in pilatus.acq_status_fault_error
    wait_until(lambda: not pilatus.ready_for_next_image and pilatus.last_image_saved == 1, 5)
    with h5py.File(moved / "scan_0000.h5", "r") as f:
        frames = f[DATA][:]
    assert frames.shape[0] == 2 and frames.max() > 0
    event = json.loads(pilatus.file_event)
    assert event["file_path"].endswith("scan_0001.h5") and event["done"] and not event["success"]
    # prepareAcq clears the fault.
    pilatus.saving_directory = str(moved)
    pilatus.saving_frame_per_file = 10000
    pilatus.acq_nb_frames = 1
    pilatus.prepareAcq()
    assert pilatus.acq_status == "Ready" and pilatus.state() == tango.DevState.ON


def test_stop_and_abort_mid_acquisition_close_the_file(pilatus, tmp_path):
    pilatus.acq_nb_frames = 1000
    pilatus.acq_expo_time = 0.02
    for stop, number in ((pilatus.stopAcq, 0), (pilatus.abortAcq, 1)):
        path = tmp_path / f"scan_{number:04d}.h5"
        pilatus.prepareAcq()
        pilatus.startAcq()
        wait_until(lambda: pilatus.last_image_saved >= 3, 10, message="some frames saved")
        # A SWMR reader sees the frames while the acquisition runs.
        with h5py.File(path, "r", swmr=True) as f:
            assert f[DATA].shape[0] >= 4
        stop()
        wait_ready(pilatus)
        event = json.loads(pilatus.file_event)
        assert event == {**event, "file_path": str(path), "done": True, "success": True}
        saved = pilatus.last_image_saved + 1
        assert 4 <= saved < 1000
        assert saved_frames(path) == saved


def test_last_image_is_a_binned_preview(pilatus, events):
    previews = events["image_preview"]
    previews.clear()
    pilatus.acq_nb_frames = 3
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_ready(pilatus)
    preview = pilatus.image_preview
    assert preview.shape == (pilatus.image_height // 4, pilatus.image_width // 4)
    assert preview.dtype == np.int32 and preview.min() >= 0 and preview.sum() > 0
    assert pilatus.image_type == "Bpp32S"
    # Change events: throttled while acquiring, and always the last frame at the end.
    wait_until(lambda: previews and np.array_equal(previews[-1], preview), 5, message="the last preview event")
    assert len(previews) <= 3


def test_declares_bluesky_roles(pilatus_stack, pilatus):
    database = tango.Database(*pilatus_stack.tango_host.split(":"))
    declared = database.get_class_property("LimaCCDs", ["bluesky_roles"])["bluesky_roles"]
    roles = dict(item.split("=", 1) for item in declared)
    assert roles["kind"] == "detector"
    assert roles["trigger"] == "startAcq" and "start" not in roles  # each startAcq: one frame
    assert roles["file_event"] == "file_event"


def test_killed_server_leaves_a_readable_file(make_stack, configs, tmp_path):
    running = make_stack(configs.pilatus(sample_axis=[""], trigger_source=[""]), **configs.options)
    pilatus = running.proxy("sim/pilatus/1")
    pilatus.saving_directory = str(tmp_path)
    pilatus.acq_nb_frames = 0
    pilatus.acq_expo_time = 0.02
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.last_image_saved >= 4, 10, message="frames saved")
    saved = pilatus.last_image_saved + 1
    running.kill_server("Pilatus/test")
    with h5py.File(tmp_path / "pilatus_0000.h5", "r", swmr=True) as f:
        data = f[DATA][:]
    assert data.shape[0] >= saved
    assert (data[:saved].reshape(saved, -1).max(axis=1) > 0).all()


def test_misconfigured_device_is_in_fault_with_the_reason(make_stack, configs):
    config = configs.pilatus(detector_size=["100"], sample_axis=[""], trigger_source=[""])
    running = make_stack(config, **configs.options)
    pilatus = running.proxy("sim/pilatus/1")
    assert pilatus.state() == tango.DevState.FAULT
    assert "detector_size needs two integers" in pilatus.status()
    assert "detector_size" in refused(pilatus.prepareAcq)


def test_not_enough_space_is_refused_by_prepare(pilatus):
    pilatus.acq_nb_frames = 2_000_000_000  # terabytes of frames
    assert "free" in refused(pilatus.prepareAcq)


def test_disk_full_during_acquisition_faults_and_keeps_frames(make_stack, configs, tmp_path):
    running = make_stack(configs.pilatus(sample_axis=[""], trigger_source=[""]), **configs.options)
    pilatus = running.proxy("sim/pilatus/1")
    pilatus.saving_directory = str(tmp_path)
    pilatus.saving_format = "HDF5"  # 33 kB per frame: the limit below is reached after a few frames
    pilatus.acq_nb_frames = 1000
    pilatus.acq_expo_time = 0.005
    # A file-size limit on the server process stands in for a full disk: writes fail with EFBIG.
    limit = 400_000
    resource.prlimit(running.server_pid("Pilatus/test"), resource.RLIMIT_FSIZE, (limit, limit))
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Fault", 20, message="acq_status Fault")
    assert pilatus.state() == tango.DevState.FAULT
    assert "File too large" in pilatus.status() or "too large" in pilatus.acq_status_fault_error
    wait_until(lambda: json.loads(pilatus.file_event)["done"], 5, message="file closed")
    assert not json.loads(pilatus.file_event)["success"]
    saved = pilatus.last_image_saved + 1
    assert 3 <= saved < 1000
    with h5py.File(tmp_path / "pilatus_0000.h5", "r", swmr=True) as f:
        frames = f[DATA][:saved]
    assert frames.shape[0] == saved and (frames.reshape(saved, -1).max(axis=1) > 0).all()
