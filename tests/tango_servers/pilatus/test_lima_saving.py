"""LimaCCDs frames and files on sim/pilatus/1: readImageSeq as DATA_ARRAY compared with the file,
CtSaving naming (index format, frames per file, next number), ABORT, APPEND, MULTISET, MANUAL
writeImage, headers, the NXmx geometry's beam centre and distance, reset."""

import json

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import nxmx
import pytest
import tango
from sardana_limaccd.client import LimaImageFormat

from tango_servers.pilatus import data_array
from tango_servers.pilatus.cbf import read_data_blocks
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


def use_cbf(proxy: tango.DeviceProxy) -> None:
    """Save CBF files, one frame per file (Lima takes no other number; the format sets the suffix)."""
    proxy.saving_frame_per_file = 1
    proxy.saving_format = "CBF"


def taken(proxy: tango.DeviceProxy, frames: int) -> np.ndarray:
    """The frames of the last acquisition, from readImageSeq."""
    return data_array.decode(proxy.readImageSeq([0, frames])[1])[1]


def test_append_adds_each_acquisition_to_the_same_file(pilatus, tmp_path):
    """CtSaving's APPEND: the frames go after those already in the file, and saving_next_number
    stays, so the next acquisition appends to the same file again."""
    pilatus.saving_overwrite_policy = "append"
    acquire(pilatus, 2)
    first = taken(pilatus, 2)
    assert pilatus.saving_next_number == 0
    acquire(pilatus, 3)
    expected = np.concatenate([first, taken(pilatus, 3)])
    assert pilatus.saving_next_number == 0
    path = tmp_path / "scan_0000.h5"
    assert list(tmp_path.iterdir()) == [path]
    assert json.loads(pilatus.file_event) == {
        "file_path": str(path),
        "file_type": "h5",
        "hinted_location": {"data": DATA},
        "done": True,
        "success": True,
    }
    with h5py.File(path, "r") as f:
        assert list(f) == ["entry_0000"]
        np.testing.assert_array_equal(f[DATA][()], expected)
    with fabio.open(str(path)) as image:
        assert image.nframes == 5
        np.testing.assert_array_equal(image.getframe(4).data, expected[4])


def test_multiset_puts_each_acquisition_into_the_next_entry(pilatus, tmp_path):
    """CtSaving's MULTISET: one file for the whole acquisition (saving_frame_per_file aside), a new
    entry_NNNN per acquisition, saving_next_number kept; file_event names the new entry's data."""
    pilatus.saving_overwrite_policy = "MULTISET"
    pilatus.saving_frame_per_file = 1
    acquire(pilatus, 3)
    first = taken(pilatus, 3)
    acquire(pilatus, 2)
    second = taken(pilatus, 2)
    assert pilatus.saving_next_number == 0
    path = tmp_path / "scan_0000.h5"
    assert list(tmp_path.iterdir()) == [path]
    assert json.loads(pilatus.file_event)["hinted_location"] == {"data": "/entry_0001/measurement/data"}
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry_0001"
        np.testing.assert_array_equal(f[DATA][()], first)
        np.testing.assert_array_equal(f["/entry_0001/measurement/data"][()], second)
    with fabio.open(str(path)) as newest, fabio.open(f"{path}::{DATA}") as older:
        assert (newest.nframes, older.nframes) == (2, 3)
        np.testing.assert_array_equal(older.getframe(2).data, first[2])


def test_saving_format_sets_the_suffix_and_cbf_takes_one_frame_per_file_as_lima(pilatus):
    """LimaCCDs' write_saving_format calls CtSaving::setFormatSuffix; CtSaving::Parameters::checkValid
    refuses CBF with more than one frame per file, whichever of the two is written."""
    pilatus.saving_suffix = ".hdf"
    pilatus.saving_format = "hdf5"
    assert (pilatus.saving_format, pilatus.saving_suffix) == ("HDF5", ".h5")
    text = refused(lambda: pilatus.write_attribute("saving_format", "CBF"))
    assert "CBF file format does not support multi frame per file" in text
    assert "saving_frame_per_file 1, not 10000; HDF5 and HDF5BS take any number" in text
    assert (pilatus.saving_format, pilatus.saving_suffix) == ("HDF5", ".h5")
    use_cbf(pilatus)
    assert (pilatus.saving_format, pilatus.saving_suffix, pilatus.saving_frame_per_file) == ("CBF", ".cbf", 1)
    assert "multi frame per file" in refused(lambda: pilatus.write_attribute("saving_frame_per_file", 2))
    assert pilatus.saving_frame_per_file == 1
    pilatus.saving_format = "HDF5BS"
    pilatus.saving_frame_per_file = 2
    assert (pilatus.saving_suffix, pilatus.saving_frame_per_file) == (".h5", 2)


def test_cbf_append_and_multiset_add_data_blocks(pilatus, tmp_path):
    """CBF under APPEND: a file per frame, each acquisition adding a data block to each file;
    under MULTISET: the acquisition's frames as data blocks of one file."""
    use_cbf(pilatus)
    pilatus.saving_overwrite_policy = "APPEND"
    acquire(pilatus, 2)
    first = taken(pilatus, 2)
    acquire(pilatus, 2)
    second = taken(pilatus, 2)
    assert pilatus.saving_next_number == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan_0000.cbf", "scan_0001.cbf"]
    for number in (0, 1):
        blocks = read_data_blocks(tmp_path / f"scan_{number:04d}.cbf")
        assert [b.data.tolist() for b in blocks] == [first[number].tolist(), second[number].tolist()]
        np.testing.assert_array_equal(fabio.open(str(tmp_path / f"scan_{number:04d}.cbf")).data, first[number])
    pilatus.saving_overwrite_policy = "MULTISET"
    pilatus.saving_prefix = "set_"
    acquire(pilatus, 3)
    blocks = read_data_blocks(tmp_path / "set_0000.cbf")
    np.testing.assert_array_equal(np.stack([b.data for b in blocks]), taken(pilatus, 3))
    assert not (tmp_path / "set_0001.cbf").exists() and pilatus.saving_next_number == 0


def test_append_refuses_a_link_and_keeps_the_other_file(pilatus, tmp_path):
    elsewhere = tmp_path / "elsewhere.h5"
    elsewhere.write_text("someone else's")
    (tmp_path / "scan_0000.h5").symlink_to(elsewhere)
    pilatus.saving_overwrite_policy = "APPEND"
    text = refused(pilatus.prepareAcq)
    assert "not a plain file with a single name" in text and "APPEND adds to only plain files" in text
    (tmp_path / "scan_0000.h5").unlink()
    (tmp_path / "scan_0000.h5").write_text("not HDF5")
    assert "is not an HDF5 file" in refused(pilatus.prepareAcq)
    assert (tmp_path / "scan_0000.h5").read_text() == "not HDF5" and elsewhere.read_text() == "someone else's"
    assert pilatus.acq_status == "Ready"


def test_common_and_frame_headers_are_written_where_lima_writes_them(pilatus, tmp_path):
    pilatus.saving_common_header = ["beamline=sim", "proposal=mx1234"]
    pilatus.setImageHeader(["0;sample=lysozyme\nomega/start=0.0", "1;sample=thaumatin"])
    acquire(pilatus, 2)
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:  # once, with the first frame (CtSaving_Hdf5)
        header = f["entry_0000/instrument/Pilatus/header"]
        assert {k: header[k][()] for k in ("beamline", "proposal", "sample")} == {
            "beamline": b"sim",
            "proposal": b"mx1234",
            "sample": b"lysozyme",
        }
        assert header["omega/start"][()] == b"0.0"
    use_cbf(pilatus)
    pilatus.saving_next_number = 1
    pilatus.setImageHeader(["1;sample=thaumatin\nomega/start=0.5"])
    acquire(pilatus, 2)  # frame 0 has no header of its own left: CtSaving took it when saving it
    zero, one = (fabio.open(str(tmp_path / f"scan_{n:04d}.cbf")).header for n in (1, 2))
    assert zero["_Misc.beamline"] == one["_Misc.beamline"] == "sim" and "_Misc.sample" not in zero
    assert one["_Misc.sample"] == "thaumatin" and one["_omega.start"] == "0.5"
    pilatus.resetCommonHeader()
    assert pilatus.saving_common_header is None or list(pilatus.saving_common_header) == []
    acquire(pilatus, 1)
    assert "_Misc.beamline" not in fabio.open(str(tmp_path / "scan_0003.cbf")).header


def test_beam_centre_and_distance_are_memorized_and_go_into_the_files(pilatus_stack, pilatus, tmp_path):
    db = tango.Database(*pilatus_stack.tango_host.split(":"))
    before = (pilatus.beam_center_x, pilatus.beam_center_y, pilatus.detector_distance)
    assert before[:2] == (pilatus.image_width / 2, pilatus.image_height / 2)  # the middle until set
    try:
        pilatus.beam_center_x, pilatus.beam_center_y, pilatus.detector_distance = 40.5, 20.25, 0.35
        memorized = db.get_device_attribute_property(pilatus.dev_name(), ["beam_center_x", "detector_distance"])
        assert memorized["beam_center_x"]["__value"] == ["40.5"]
        assert float(memorized["detector_distance"]["__value"][0]) == 0.35
        assert "detector_distance" in refused(lambda: pilatus.write_attribute("detector_distance", 0.0))
        acquire(pilatus, 1)
        with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
            (entry,) = nxmx.NXmx(f).entries
            (detector,) = entry.instruments[0].detectors
            assert detector.beam_center_x.to("pixel").magnitude == 40.5
            assert detector.beam_center_y.to("pixel").magnitude == 20.25
            assert detector.distance.to("m").magnitude == pytest.approx(0.35)
        use_cbf(pilatus)
        acquire(pilatus, 1)
        header = fabio.open(str(tmp_path / "scan_0001.cbf")).pilatus_headers
        assert header["Beam_xy"] == (40.5, 20.25) and header["Detector_distance"] == 0.35
    finally:
        pilatus.beam_center_x, pilatus.beam_center_y, pilatus.detector_distance = before
