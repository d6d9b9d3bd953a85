"""Lima's image operations (image_bin, image_flip, image_rotation, image_roi) and acq_mode ACCUMULATION
on a real sim/pilatus/1, driven with raw PyTango as a LimaCCDs client drives it.

The simulator runs with one background realisation and no spots (`noise_bank_size` 1,
`peak_counts` 0), so every detector frame is the same: each transformed or accumulated frame is
checked against numpy applied to the untransformed frame.
"""

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest
import tango

from tango_servers.pilatus import data_array
from tango_servers.pilatus.nexus import DETECTOR_PATH
from tango_servers.pilatus.writer import DATA_PATH
from tango_servers.stack.waiting import wait_until

from .conftest import HEIGHT, WIDTH


@pytest.fixture
def pilatus(steady_pilatus: tango.DeviceProxy) -> tango.DeviceProxy:
    return steady_pilatus


def refused(call) -> str:
    with pytest.raises(tango.DevFailed) as info:
        call()
    return info.value.args[0].desc


def acquire(proxy: tango.DeviceProxy, frames: int = 1) -> np.ndarray:
    """Take `frames` frames and return them as readImageSeq sends them (frames, rows, columns)."""
    proxy.acq_nb_frames = frames
    proxy.prepareAcq()
    proxy.startAcq()
    wait_until(lambda: proxy.acq_status == "Ready", 10, message="acq_status Ready")
    header, stack = data_array.decode(proxy.readImageSeq([0, frames])[1])
    assert header.dims == (proxy.image_width, proxy.image_height, frames)
    return stack


def binned(frame: np.ndarray, bx: int, by: int, mean: bool = False) -> np.ndarray:
    """numpy's bx x by binning of the detector frame: edges dropped, a bin with a gap is -1."""
    rows, cols = frame.shape[0] // by, frame.shape[1] // bx
    blocks = frame[: rows * by, : cols * bx].reshape(rows, by, cols, bx).astype(np.int64)
    out = blocks.sum(axis=(1, 3)) // (bx * by if mean else 1)
    out[blocks.min(axis=(1, 3)) < 0] = -1
    return out.astype(np.int32)


@pytest.fixture
def detector_frame(pilatus: tango.DeviceProxy) -> np.ndarray:
    frame = acquire(pilatus)[0]
    assert frame.shape == (HEIGHT, WIDTH) and (frame == -1).any() and frame.max() > 0
    return frame


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"image_flip": [True, False]}, lambda f: f[:, ::-1]),
        ({"image_flip": [False, True]}, lambda f: f[::-1, :]),
        ({"image_rotation": "90"}, lambda f: np.rot90(f, -1)),  # clockwise, ProcessLib's R_90
        ({"image_rotation": "180"}, lambda f: f[::-1, ::-1]),
        ({"image_rotation": "270"}, lambda f: np.rot90(f, 1)),
        ({"image_bin": [2, 2]}, lambda f: binned(f, 2, 2)),
        ({"image_bin": [3, 2], "image_bin_mode": "MEAN"}, lambda f: binned(f, 3, 2, mean=True)),
        ({"image_roi": [10, 5, 40, 20]}, lambda f: f[5:25, 10:50]),
        # Lima's order: bin, flip, rotation, then the roi in the frame they make.
        (
            {"image_bin": [2, 1], "image_flip": [True, False], "image_rotation": "90", "image_roi": [3, 4, 20, 30]},
            lambda f: np.rot90(binned(f, 1, 2)[:, ::-1], -1)[4:34, 3:23],
        ),
    ],
)
def test_each_image_operation_changes_the_frame_as_numpy_predicts(pilatus, detector_frame, settings, expected):
    for name, value in settings.items():
        pilatus.write_attribute(name, value)
    want = expected(detector_frame)
    (frame,) = acquire(pilatus)
    np.testing.assert_array_equal(frame, want)
    assert list(pilatus.image_sizes) == [1, 4, want.shape[1], want.shape[0]]
    assert (pilatus.image_width, pilatus.image_height) == (want.shape[1], want.shape[0])
    np.testing.assert_array_equal(data_array.decode(pilatus.readImage(0)[1])[1], want)
    np.testing.assert_array_equal(data_array.decode(pilatus.last_image[1])[1], want)
    assert list(pilatus.image_max_dim) == [WIDTH, HEIGHT]  # the detector's


@pytest.mark.parametrize("saving_format", ["HDF5", "HDF5BS", "CBF"])
def test_saved_frames_have_the_transformed_shape(pilatus, detector_frame, tmp_path, saving_format):
    pilatus.image_bin = [2, 2]
    pilatus.image_rotation = "270"
    pilatus.image_roi = [1, 2, 20, 40]
    if saving_format == "CBF":
        pilatus.saving_frame_per_file = 1
    pilatus.saving_format = saving_format
    frames = acquire(pilatus, 3)
    np.testing.assert_array_equal(frames[0], np.rot90(binned(detector_frame, 2, 2), 1)[2:42, 1:21])
    if saving_format == "CBF":
        saved = np.stack([fabio.open(str(tmp_path / f"image_{n:04d}.cbf")).data for n in (1, 2, 3)])
    else:
        with h5py.File(tmp_path / "image_0001.h5", "r") as f:  # the first acquisition saved image_0000
            saved = f[DATA_PATH][:]
            assert f[f"{DETECTOR_PATH}/pixel_mask"].shape == (40, 20)
    np.testing.assert_array_equal(saved, frames)
    assert saved.shape == (3, 40, 20)


def test_roi_reads_and_follows_bin_flip_and_rotation_as_ctimage(pilatus):
    assert list(pilatus.image_roi) == [0, 0, WIDTH, HEIGHT]
    pilatus.image_roi = [10, 20, 30, 40]
    assert list(pilatus.image_roi) == [10, 20, 30, 40]
    pilatus.image_bin = [2, 2]  # the roi is re-binned (Roi::getBinned)
    assert list(pilatus.image_roi) == [5, 10, 15, 20]
    assert list(pilatus.image_bin) == [2, 2]
    pilatus.image_flip = [True, False]  # the same detector area, mirrored: x = 62 - 5 - 15
    assert list(pilatus.image_roi) == [42, 10, 15, 20]
    pilatus.image_rotation = "90"  # Roi::getRotated in the 62 x 33 binned frame: x = 33 - 10 - 20
    assert list(pilatus.image_roi) == [3, 42, 20, 15]
    assert (pilatus.image_width, pilatus.image_height) == (20, 15)
    pilatus.image_roi = [0, 0, 0, 0]  # empty: the whole frame
    assert list(pilatus.image_roi) == [0, 0, 33, 62]


def test_bad_image_values_are_refused_naming_the_allowed_ones(pilatus):
    text = refused(lambda: pilatus.write_attribute("image_roi", [100, 0, 30, 10]))
    assert "image_roi [100, 0, 30, 10] is out of the frame" in text and f"x + width <= {WIDTH}" in text
    pilatus.image_bin = [2, 2]
    text = refused(lambda: pilatus.write_attribute("image_roi", [0, 0, 63, 10]))
    assert "x + width <= 62" in text  # the roi is in the binned frame
    assert "Invalid binning" in refused(lambda: pilatus.write_attribute("image_bin", [0, 1]))
    assert "leaves no pixel" in refused(lambda: pilatus.write_attribute("image_bin", [200, 1]))
    text = refused(lambda: pilatus.write_attribute("image_rotation", "45"))
    assert "image_rotation '45' is not one of NONE, 90, 180, 270" in text
    assert "image_bin_mode 'median' is not one of SUM, MEAN" in refused(
        lambda: pilatus.write_attribute("image_bin_mode", "median")
    )
    assert list(pilatus.image_bin) == [2, 2] and pilatus.image_rotation == "NONE"
    pilatus.acq_nb_frames = 0  # until stopAcq
    pilatus.prepareAcq()
    pilatus.startAcq()
    for name, value in (("image_bin", [1, 1]), ("image_rotation", "90"), ("image_flip", [True, True])):
        text = refused(lambda name=name, value=value: pilatus.write_attribute(name, value))
        assert "cannot change the image operations while an acquisition is running: stopAcq first" in text
    pilatus.write_attribute("image_bin", [2, 2])  # the value it has is accepted
    pilatus.stopAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="acq_status Ready")
    assert acquire(pilatus).shape == (1, HEIGHT // 2, WIDTH // 2)  # still usable


def test_accumulation_splits_the_exposure_as_lima_and_sums_the_sub_frames(pilatus, detector_frame):
    assert (pilatus.acc_nb_frames, pilatus.acc_expo_time, pilatus.acc_live_time) == (-1, -1, -1)  # SINGLE
    pilatus.acq_mode = "accumulation"
    pilatus.acq_expo_time = 0.03
    pilatus.acc_max_expo_time = 0.01
    assert pilatus.acq_mode == "ACCUMULATION" and pilatus.acc_time_mode == "LIVE"
    assert pilatus.acc_nb_frames == 3
    assert pilatus.acc_expo_time == pytest.approx(0.01) and pilatus.acc_live_time == pytest.approx(0.03)
    assert pilatus.acc_dead_time == 0.0 and pilatus.image_type == "Bpp32S"
    frames = acquire(pilatus, 2)
    expected = np.where(detector_frame < 0, -1, 3 * detector_frame)
    for frame in frames:
        np.testing.assert_array_equal(frame, expected)
    assert pilatus.last_image_saved == 1  # frames, not sub-frames
    pilatus.image_bin = [2, 2]  # the image operations apply to each sub-frame first (CtAccumulation)
    (frame,) = acquire(pilatus)
    sub = binned(detector_frame, 2, 2)
    np.testing.assert_array_equal(frame, np.where(sub < 0, -1, 3 * sub))


def test_accumulation_in_internal_trigger_multi_takes_every_sub_frame_per_start(pilatus, detector_frame):
    pilatus.acq_mode = "ACCUMULATION"
    pilatus.acq_expo_time = 0.02
    pilatus.acc_max_expo_time = 0.01
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = 2
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.last_image_ready == 0, 10, message="the first frame")
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="acq_status Ready")
    _, frames = data_array.decode(pilatus.readImageSeq([0, 2])[1])
    for frame in frames:
        np.testing.assert_array_equal(frame, np.where(detector_frame < 0, -1, 2 * detector_frame))


def test_accumulation_settings_refused_with_lima_reasons(pilatus):
    text = refused(lambda: pilatus.write_attribute("acq_mode", "CONCATENATION"))
    assert "CONCATENATION is not available" in text and "use SINGLE, ACCUMULATION" in text
    assert "acc_time_mode 'dead' is not one of LIVE, REAL" in refused(
        lambda: pilatus.write_attribute("acc_time_mode", "dead")
    )
    assert "use False" in refused(lambda: pilatus.write_attribute("acc_saturated_active", True))
    assert "Accumulation threshold plugins not loaded" in refused(
        lambda: pilatus.write_attribute("acc_saturated_cblevel", 3)
    )
    with pytest.raises(tango.DevFailed):
        pilatus.acc_max_expo_time = 0.0  # below valid_ranges' minimum exposure
    pilatus.acc_time_mode = "real"
    assert pilatus.acc_time_mode == "REAL" and pilatus.acq_mode == "SINGLE"
    assert pilatus.acc_saturated_cblevel == -1 and pilatus.acc_saturated_active is False
