"""LimaCCDs frames and files on sim/pilatus/1: readImageSeq as DATA_ARRAY compared with the file,
CtSaving naming (index format, frames per file, next number), ABORT, MANUAL writeImage, reset."""

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest
import tango
from sardana_limaccd.client import LimaImageFormat

from tango_servers.pilatus import data_array
from tango_servers.pilatus.writer import DATA_PATH as DATA
from tango_servers.stack.waiting import wait_until


def refused(call) -> str:
    with pytest.raises(tango.DevFailed) as info:
        call()
    return info.value.args[0].desc


def wait_ready(proxy: tango.DeviceProxy, timeout: float = 10.0) -> None:
    wait_until(lambda: proxy.acq_status == "Ready", timeout, message="acq_status Ready")


def acquire(proxy: tango.DeviceProxy, frames: int) -> None:
    proxy.acq_nb_frames = frames
    proxy.prepareAcq()
    proxy.startAcq()
    wait_ready(proxy)


def test_read_image_seq_frames_equal_the_file(pilatus, tmp_path):
    acquire(pilatus, 5)
    kind, buffer = pilatus.readImageSeq([0, 5])
    assert kind == "DATA_ARRAY"
    header, frames = data_array.decode(buffer)
    assert header.version == 4 and header.category == data_array.Category.IMAGE_STACK
    assert header.dims == (pilatus.image_width, pilatus.image_height, 5) and header.image_number == 0
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        np.testing.assert_array_equal(frames, f[DATA][:])
    # One frame, as sardana-limaccd's decoder reads it (its DataArrayVersion default is 4).
    kind, buffer = pilatus.readImageSeq([3, 4])
    (frame,) = LimaImageFormat(4).decode(buffer, n=1)
    np.testing.assert_array_equal(frame, frames[3])
    kind, buffer = pilatus.readImage(2)
    header, image = data_array.decode(buffer)
    assert header.category == data_array.Category.IMAGE and header.image_number == 2
    np.testing.assert_array_equal(image, frames[2])
    np.testing.assert_array_equal(data_array.decode(pilatus.last_image[1])[1], frames[4])
    raw = pilatus.getImage(1)
    np.testing.assert_array_equal(np.frombuffer(raw.tobytes(), dtype="<i4").reshape(frames[1].shape), frames[1])
    assert "frames 0 to 4 are available" in refused(lambda: pilatus.readImageSeq([3, 9]))


def test_auto_frame_names_follow_index_format_and_frames_per_file(pilatus, tmp_path):
    pilatus.saving_index_format = "%06d"
    pilatus.saving_frame_per_file = 2
    pilatus.saving_next_number = 7
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 5
    pilatus.prepareAcq()
    for i in range(5):
        pilatus.startAcq()  # IntTrigMult: one frame per startAcq, as sardana-limaccd counts
        wait_until(lambda i=i: pilatus.last_image_saved == i, 5, message=f"frame {i} saved")
        if i < 4:  # (after the last frame the acquisition ends and closes its last file)
            # CtSaving: the number passes a file as soon as it holds its frames (read after
            # each point by sardana-limaccd to name that point's file).
            assert pilatus.saving_next_number == 7 + (i + 1) // 2
    wait_ready(pilatus)
    assert pilatus.saving_next_number == 10  # the last file, closed with one frame
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["scan_000007.h5", "scan_000008.h5", "scan_000009.h5"]
    counts = [h5py.File(tmp_path / name, "r")[DATA].shape[0] for name in names]
    assert counts == [2, 2, 1]
    assert pilatus.saving_next_number == 10
    text = refused(lambda: setattr(pilatus, "saving_index_format", "%s/%d"))
    assert "saving_index_format" in text


def test_abort_policy_refuses_when_any_file_of_the_acquisition_exists(pilatus, tmp_path):
    pilatus.saving_frame_per_file = 2
    (tmp_path / "scan_0001.h5").write_text("precious")  # the acquisition's second file
    pilatus.acq_nb_frames = 4
    text = refused(pilatus.prepareAcq)
    assert "scan_0001.h5 already exists and saving_overwrite_policy is ABORT" in text
    assert (tmp_path / "scan_0001.h5").read_text() == "precious"
    assert not (tmp_path / "scan_0000.h5").exists()  # refused before any file is made
    # Writing the prefix under ABORT moves the number past the existing files, as LimaCCDs does.
    pilatus.saving_prefix = "scan_"
    assert pilatus.saving_next_number == 2
    acquire(pilatus, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan_0001.h5", "scan_0002.h5", "scan_0003.h5"]


def test_manual_saving_writes_the_frames_asked_for(pilatus, tmp_path):
    pilatus.saving_mode = "manual"
    acquire(pilatus, 3)
    assert list(tmp_path.iterdir()) == []
    pilatus.writeImage(1)
    pilatus.writeImage(-1)
    _, frames = data_array.decode(pilatus.readImageSeq([0, 3])[1])
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][:], frames[1:2])
    with h5py.File(tmp_path / "scan_0001.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][:], frames[2:3])
    assert pilatus.saving_next_number == 2 and pilatus.last_image_saved == 2
    assert "not in the buffer" in refused(lambda: pilatus.writeImage(7))
    pilatus.saving_mode = "AUTO_FRAME"
    assert "saving_mode MANUAL" in refused(lambda: pilatus.writeImage(0))


def test_reset_leaves_fault(pilatus, tmp_path):
    # A file appearing during the acquisition (ABORT) is Lima's SaveOverwriteError: Fault.
    pilatus.saving_frame_per_file = 1
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 3
    pilatus.prepareAcq()
    (tmp_path / "scan_0001.h5").write_text("someone else's")
    pilatus.startAcq()
    wait_until(lambda: pilatus.last_image_saved == 0, 5, message="frame 0 saved")
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Fault", 10, message="acq_status Fault")
    assert "scan_0001.h5 already exists" in pilatus.acq_status_fault_error
    assert pilatus.state() == tango.DevState.FAULT
    assert (tmp_path / "scan_0001.h5").read_text() == "someone else's"
    pilatus.reset()
    wait_ready(pilatus)
    assert pilatus.state() == tango.DevState.ON and pilatus.acq_status_fault_error == "No error"
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER"
    pilatus.saving_next_number = 2
    acquire(pilatus, 1)
    assert (tmp_path / "scan_0002.h5").exists()


def test_auto_header_saves_each_frame_once_its_header_is_set(pilatus, tmp_path):
    pilatus.saving_mode = "auto_header"
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 3
    pilatus.prepareAcq()
    for _ in range(3):
        pilatus.startAcq()
    wait_until(lambda: pilatus.last_image_ready == 2, 10, message="three frames taken")
    assert pilatus.last_image_saved == -1 and pilatus.acq_status == "Running"  # no header yet
    pilatus.setImageHeader(["0;sample=lysozyme\nomega=0.0", "1;sample=lysozyme"])
    wait_until(lambda: pilatus.last_image_saved == 1, 10, message="frames 0 and 1 saved")
    assert pilatus.acq_status == "Running"
    pilatus.setImageHeader(["2;sample=lysozyme"])
    wait_ready(pilatus)
    assert pilatus.last_image_saved == 2
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        assert f[DATA].shape[0] == 3
    assert "frame number" in refused(lambda: pilatus.setImageHeader(["no number here"]))
    pilatus.resetFrameHeaders()
