"""What the files say about frames made by Lima's image operations and ACCUMULATION, on a real
sim/pilatus/1 driven with raw PyTango: Lima's image_operation and acquisition collections
(CtSaving_Hdf5.cpp), the NXmx geometry of the saved frames (read with DIALS's `nxmx`), the CBF
header, and the free-space check and frame buffer sized for the saved frames.
"""

import shutil

import fabio
import h5py
import numpy as np
import nxmx
import pytest
import tango

from tango_servers.pilatus.nexus import DETECTOR_PATH, PIXEL_SIZE_M, SATURATION_VALUE
from tango_servers.pilatus.writer import DATA_PATH

from .conftest import HEIGHT, WIDTH
from .test_image import acquire, refused

BEAM = (40.5, 20.25)  # detector pixels
# Binned 3 x 2 (the output's x and y), rotated 90 (so 2 x 3 on the detector), flipped, a roi.
TRANSFORMED = {
    "image_bin": [3, 2],
    "image_flip": [False, True],
    "image_rotation": "90",
    "image_roi": [2, 5, 15, 30],
}


@pytest.fixture
def pilatus(steady_pilatus: tango.DeviceProxy) -> tango.DeviceProxy:
    steady_pilatus.beam_center_x, steady_pilatus.beam_center_y = BEAM
    return steady_pilatus


def transform(proxy: tango.DeviceProxy) -> None:
    for name, value in TRANSFORMED.items():
        proxy.write_attribute(name, value)


class LabGeometry:
    """The NXmx geometry of a file's detector, as DIALS's `nxmx` reads it (mm, laboratory frame)."""

    def __init__(self, f: h5py.File):
        (entry,) = nxmx.NXmx(f).entries
        (self.detector,) = entry.instruments[0].detectors
        (module,) = self.detector.modules
        chain = nxmx.get_dependency_chain(module.module_offset)
        self.origin = nxmx.get_cumulative_transformation(chain)[0][:3, 3]
        self.fast, self.slow = (
            np.asarray(axis.vector) * axis[()].to("mm").magnitude
            for axis in (module.fast_pixel_direction, module.slow_pixel_direction)
        )

    def lab(self, x: float, y: float) -> np.ndarray:
        """Where the point (x, y) of a frame (pixel coordinates) lies."""
        return self.origin + x * self.fast + y * self.slow

    def pixel(self, lab: np.ndarray) -> np.ndarray:
        """The frame's pixel coordinates of a point of the detector plane."""
        axes = np.stack([self.fast[:2], self.slow[:2]], axis=1)
        return np.linalg.solve(axes, lab[:2] - self.origin[:2])

    @property
    def beam_center(self) -> tuple[float, float]:
        return (
            self.detector.beam_center_x.to("pixel").magnitude,
            self.detector.beam_center_y.to("pixel").magnitude,
        )


def test_hdf5_records_the_image_operations_and_accumulation_as_lima(pilatus, tmp_path):
    transform(pilatus)
    pilatus.image_bin_mode = "MEAN"
    pilatus.acq_mode = "ACCUMULATION"
    pilatus.acq_expo_time = 0.02
    pilatus.acc_max_expo_time = 0.01
    acquire(pilatus, 2)
    with h5py.File(tmp_path / "image_0000.h5", "r") as f:
        assert f[DATA_PATH].shape == (2, 30, 15)
        image = f[f"{DETECTOR_PATH}/image_operation"]
        values = {name: image[name][()] for name in ("dimension/xsize", "dimension/ysize", "binning/x", "binning/y")}
        assert values == {"dimension/xsize": 15, "dimension/ysize": 30, "binning/x": 3, "binning/y": 2}
        roi = [image[f"region_of_interest/{name}"][()] for name in ("xstart", "ystart", "xsize", "ysize")]
        assert roi == [2, 5, 15, 30] and image["binning/x"].dtype == np.int32
        assert (image["flipping/x"][()], image["flipping/y"][()]) == (0, 1) and image["flipping/y"].dtype == np.uint8
        assert image["rotation"][()] == b"Rotation_90" and image["bin_mode"][()] == b"Bin_Mean"
        info = f[f"{DETECTOR_PATH}/detector_information"]
        assert (info["max_image_size/xsize"][()], info["max_image_size/ysize"][()]) == (WIDTH, HEIGHT)
        acquisition = f[f"{DETECTOR_PATH}/acquisition"]
        assert acquisition["mode"][()] == b"Accumulation" and acquisition["trigger_mode"][()] == b"IntTrig"
        assert acquisition["exposure_time"][()] == pytest.approx(0.02) and acquisition["nb_frames"][()] == 2
        acc = acquisition["accumulation"]
        assert acc["time_mode"][()] == b"Live" and acc["max_exposure_time"][()] == pytest.approx(0.01)
        assert acc["exposure_time"][()] == pytest.approx(0.01) and acc["live_time"][()] == pytest.approx(0.02)
        assert acc["dead_time"][()] == 0.0
        # Two sub-frames of a 3 x 2 MEAN bin: 2 x the counters' limit is still a valid count.
        assert f[f"{DETECTOR_PATH}/saturation_value"][()] == 2 * SATURATION_VALUE
    for name, value in {"image_roi": [0, 0, 0, 0], "image_bin": [1, 1], "image_flip": [False, False]}.items():
        pilatus.write_attribute(name, value)
    pilatus.image_rotation = "NONE"
    pilatus.acq_mode = "SINGLE"
    acquire(pilatus, 1)
    with h5py.File(tmp_path / "image_0001.h5", "r") as f:
        image = f[f"{DETECTOR_PATH}/image_operation"]
        roi = [image[f"region_of_interest/{name}"][()] for name in ("xstart", "ystart", "xsize", "ysize")]
        assert roi == [0, 0, WIDTH, HEIGHT]  # CtImage::getRoi: the whole frame without a roi
        assert image["rotation"][()] == b"Rotation_0" and image["flipping/x"][()] == 0
        acquisition = f[f"{DETECTOR_PATH}/acquisition"]
        assert acquisition["mode"][()] == b"Single" and "accumulation" not in acquisition


def test_nxmx_geometry_of_a_transformed_file_maps_each_pixel_where_its_counts_came_from(pilatus, tmp_path):
    """A binned, flipped, rotated, roi'd file: the beam is where the detector has it, and each
    saved pixel lies over the detector pixels whose counts it sums."""
    (detector_frame,) = acquire(pilatus, 1)
    transform(pilatus)
    (saved,) = acquire(pilatus, 1)
    with h5py.File(tmp_path / "image_0000.h5", "r") as plain_file, h5py.File(tmp_path / "image_0001.h5", "r") as f:
        plain, transformed = LabGeometry(plain_file), LabGeometry(f)
        assert plain.beam_center == BEAM
        assert f[f"{DETECTOR_PATH}/x_pixel_size"][()] == pytest.approx(3 * PIXEL_SIZE_M)
        assert f[f"{DETECTOR_PATH}/y_pixel_size"][()] == pytest.approx(2 * PIXEL_SIZE_M)
        np.testing.assert_allclose(np.linalg.norm(transformed.fast), 3 * PIXEL_SIZE_M * 1e3)
        np.testing.assert_allclose(transformed.lab(*transformed.beam_center)[:2], [0, 0], atol=1e-9)
        np.testing.assert_allclose(plain.lab(*BEAM)[:2], [0, 0], atol=1e-9)
        assert f[f"{DETECTOR_PATH}/saturation_value"][()] == 6 * SATURATION_VALUE  # a 3 x 2 SUM bin
        np.testing.assert_array_equal(f[DATA_PATH][0], saved)
    rows, columns = saved.shape
    for row, column in [(0, 0), (0, columns - 1), (rows - 1, 0), (rows // 2, columns // 3), (rows - 1, columns - 1)]:
        corners = [plain.pixel(transformed.lab(column + dx, row + dy)) for dx, dy in ((0, 0), (1, 1))]
        (x0, x1), (y0, y1) = (sorted(round(float(c[axis])) for c in corners) for axis in (0, 1))
        assert (x1 - x0, y1 - y0) == (2, 3)  # the 3 x 2 bin runs along the detector's y and x
        block = detector_frame[y0:y1, x0:x1]
        expected = -1 if (block < 0).any() else block.sum()
        assert saved[row, column] == expected, (row, column, (x0, x1, y0, y1))


def test_cbf_header_gives_the_saved_frames_pixel_size_and_beam_centre(pilatus, tmp_path):
    transform(pilatus)
    acquire(pilatus, 1)
    with h5py.File(tmp_path / "image_0000.h5", "r") as f:
        beam = LabGeometry(f).beam_center
    pilatus.saving_frame_per_file = 1
    pilatus.saving_format = "CBF"
    acquire(pilatus, 1)
    header = fabio.open(str(tmp_path / "image_0001.cbf")).pilatus_headers
    assert header["Pixel_size"] == pytest.approx((3 * PIXEL_SIZE_M, 2 * PIXEL_SIZE_M))
    assert header["Beam_xy"] == pytest.approx(beam, abs=0.005) and header["Count_cutoff"] == 6 * SATURATION_VALUE


def test_free_space_check_and_frame_buffer_count_the_saved_frames(pilatus, tmp_path):
    full = pilatus.buffer_max_number
    assert full == 128 * 2**20 // (WIDTH * HEIGHT * 4)  # buffer_max_memory, 128 MiB by default
    pilatus.image_bin = [2, 2]
    assert pilatus.buffer_max_number == 128 * 2**20 // ((WIDTH // 2) * (HEIGHT // 2) * 4)
    # Frames that fit on the disk binned 2 x 2 (a quarter of the bytes), not whole.
    frames = shutil.disk_usage(tmp_path).free // (WIDTH * HEIGHT * 2)
    pilatus.acq_nb_frames = frames
    pilatus.prepareAcq()
    pilatus.abortAcq()
    pilatus.image_bin = [1, 1]
    assert pilatus.buffer_max_number == full
    text = refused(pilatus.prepareAcq)
    assert f"for {frames} frames: free space or choose another saving_directory" in text
    assert not any(tmp_path.iterdir())  # the dropped acquisition's file is gone, none made
