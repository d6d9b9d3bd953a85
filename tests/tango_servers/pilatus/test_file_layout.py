"""Pilatus files as the field's readers see them: Lima's HDF5 layout (fabio), NXmx (DIALS's
`nxmx` reader) and CBF (fabio), written by the writer without Tango."""

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import nxmx
import pytest

from tango_servers.pilatus.backend import Frame, Geometry
from tango_servers.pilatus.nexus import FRAMES_PATH, PIXEL_SIZE_M
from tango_servers.pilatus.writer import (
    DATA_PATH,
    FileMetadata,
    SavingError,
    SavingFormat,
    WriterThread,
    open_file,
)

SMALL = Geometry(125, 67, 60, 30, 5, 7)
METADATA = FileMetadata(
    expo_time=0.25,
    latency_time=0.05,
    trigger_mode="EXTERNAL_GATE",
    frames_requested=3,
    energy_threshold=6.5,
    threshold_gain="HIGH",
    photon_energy=13.0,
    detector_distance=0.35,
    beam_center=(61.5, 30.25),
    omega_start=10.0,
    omega_increment=0.5,
    header=(("beamline", "sim"), ("sample", "lysozyme")),
)


def frames(n: int, positions: list[float | None] | None = None) -> list[Frame]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        data = rng.poisson(4.0, SMALL.shape).astype(np.int32)
        data[SMALL.gap_mask()] = -1
        out.append(Frame(i, data, 100.0 + i, (positions or [None] * n)[i]))
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple:
    """An HDF5BS file of three frames: the second carries a sample position, the others not."""
    path = tmp_path_factory.mktemp("layout") / "pilatus_0000.h5"
    taken = frames(3, [None, 42.0, None])
    nexus = open_file(path, SMALL, SavingFormat.HDF5BS, METADATA)
    for frame in taken:
        nexus.write(frame)
    nexus.close()
    return path, taken


def test_lima_layout_and_nexus_default_attributes(written):
    path, taken = written
    with h5py.File(path, "r") as f:
        assert dict(f.attrs)["NX_class"] == "NXroot" and f.attrs["default"] == "entry_0000"
        assert f.attrs["creator"].startswith("LIMA-")
        entry = f["entry_0000"]
        assert entry.attrs["NX_class"] == "NXentry" and entry["title"][()] == b"Lima 2D detector acquisition"
        assert entry["start_time"][()] and entry["end_time"][()].strip()
        plot = entry[entry.attrs["default"]]  # NeXus default chain: root -> entry -> NXdata
        assert plot.attrs["NX_class"] == "NXdata" and plot.attrs["signal"] == "data"
        assert f["entry_0000/instrument"].attrs["default"] == "Pilatus/plot"
        detector = f["entry_0000/instrument/Pilatus"]
        assert detector.attrs["NX_class"] == "NXdetector" and detector.attrs["default"] == "plot"
        assert entry["measurement"].attrs["NX_class"] == "NXcollection"
        assert f.get("entry_0000/measurement/data", getlink=True).path == FRAMES_PATH  # a soft link
        stacked = np.stack([frame.data for frame in taken])
        for name in (DATA_PATH, FRAMES_PATH, "entry_0000/instrument/Pilatus/plot/data", "entry_0000/data/data"):
            np.testing.assert_array_equal(f[name][()], stacked)
        assert f[FRAMES_PATH].attrs["interpretation"] == "image"
        info = detector["detector_information"]
        assert info["image_lima_type"][()] == b"Bpp32S"
        assert (info["max_image_size/xsize"][()], info["max_image_size/ysize"][()]) == (125, 67)
        assert info["pixel_size/xsize"][()] == PIXEL_SIZE_M
        acquisition = detector["acquisition"]
        assert acquisition["exposure_time"][()] == 0.25 and acquisition["latency_time"][()] == 0.05
        assert acquisition["nb_frames"][()] == 3 and acquisition["trigger_mode"][()] == b"EXTERNAL_GATE"
        assert detector["image_operation/region_of_interest/xsize"][()] == 125
        assert detector["header/sample"][()] == b"lysozyme"
        assert detector["time_of_frame"].shape == (3,)


def test_fabio_opens_the_file_as_lima_data(written):
    path, taken = written
    image = fabio.open(str(path))
    assert type(image).__name__ == "LimaImage" and image.header["detector"] == "Pilatus"
    assert image.nframes == 3
    for frame in taken:
        np.testing.assert_array_equal(image.getframe(frame.index).data, frame.data)


def test_nxmx_reader_finds_the_geometry(written):
    path, _ = written
    with h5py.File(path, "r") as f:
        (entry,) = nxmx.NXmx(f).entries
        assert entry.definition == "NXmx"
        (instrument,) = entry.instruments
        (detector,) = instrument.detectors
        assert detector.beam_center_x.to("pixel").magnitude == 61.5
        assert detector.beam_center_y.to("pixel").magnitude == 30.25
        assert detector.distance.to("m").magnitude == pytest.approx(0.35)
        assert detector.count_time.to("s").magnitude == 0.25
        assert detector.sensor_material == "Si" and detector.saturation_value == 1048575
        assert f["entry_0000/instrument/Pilatus/threshold_energy"][()] == 6500.0
        chain = nxmx.get_dependency_chain(detector.depends_on)
        assert [axis.path for axis in chain] == ["/entry_0000/instrument/Pilatus/transformations/translation"]
        (module,) = detector.modules
        np.testing.assert_array_equal(module.data_size, [67, 125])
        fast = module.fast_pixel_direction
        assert fast[()].to("m").magnitude == pytest.approx([PIXEL_SIZE_M])
        np.testing.assert_array_equal(fast.vector, [-1, 0, 0])
        # The corner pixel's position puts the beam (the z axis) on the beam centre.
        origin = nxmx.get_cumulative_transformation(nxmx.get_dependency_chain(module.module_offset))[0][:3, 3]
        np.testing.assert_allclose(origin, [61.5 * PIXEL_SIZE_M * 1e3, 30.25 * PIXEL_SIZE_M * 1e3, 350.0])
        (beam,) = instrument.beams
        assert beam.incident_wavelength.to("angstrom").magnitude == pytest.approx(12.3984 / 13.0, rel=1e-4)
        (sample,) = entry.samples
        axes = nxmx.get_rotation_axes(nxmx.get_dependency_chain(sample.depends_on))
        assert list(axes.names) == ["omega"]
        # Frames without a sample position get omega_start + index * increment.
        np.testing.assert_array_equal(sample.depends_on[()].to("deg").magnitude, [10.0, 42.0, 11.0])


def test_cbf_frame_reads_back_with_fabio(tmp_path):
    (frame,) = frames(1)
    path = tmp_path / "pilatus_0007.cbf"
    cbf = open_file(path, SMALL, SavingFormat.CBF, METADATA)
    cbf.write(frame)
    cbf.close()
    image = fabio.open(str(path))
    assert type(image).__name__ == "CbfImage"
    np.testing.assert_array_equal(image.data, frame.data)
    assert image.header["_array_data.header_convention"] == "PILATUS_1.2"
    header = image.pilatus_headers
    assert header["Threshold_setting"] == 6500.0 and header["Exposure_time"] == 0.25
    assert header["Pixel_size"] == (PIXEL_SIZE_M, PIXEL_SIZE_M)
    assert header["Beam_xy"] == (61.5, 30.25) and header["Detector_distance"] == 0.35
    assert header["Start_angle"] == 10.0 and header["Angle_increment"] == 0.5
    assert header["Gain_setting"] == ("high", "gain")


def test_cbf_holds_one_frame_and_honours_abort(tmp_path):
    first, second = frames(2)
    path = tmp_path / "one.cbf"
    cbf = open_file(path, SMALL, SavingFormat.CBF, METADATA)
    with pytest.raises(SavingError, match="already exists and saving_overwrite_policy is ABORT"):
        open_file(path, SMALL, SavingFormat.CBF, METADATA)
    cbf.write(first)
    with pytest.raises(SavingError, match="a CBF file holds one frame"):
        cbf.write(second)
    cbf.close()
    np.testing.assert_array_equal(fabio.open(str(path)).data, first.data)
    unused = open_file(tmp_path / "unused.cbf", SMALL, SavingFormat.CBF, METADATA)
    unused.close()
    assert not (tmp_path / "unused.cbf").exists()  # no frame, no file


class Listener:
    def __init__(self) -> None:
        self.saved: list[int] = []
        self.closed: list[tuple[str, int, str | None]] = []

    def file_opened(self, path) -> None:
        pass

    def frame_saved(self, index: int) -> None:
        self.saved.append(index)

    def file_closed(self, path, count: int, error: str | None) -> None:
        self.closed.append((path.name, count, error))


def test_writer_thread_writes_a_cbf_file_per_frame(tmp_path):
    listener = Listener()
    writer = WriterThread(listener)
    taken = frames(3)
    for frame in taken:
        path = tmp_path / f"f_{frame.index:04d}.cbf"
        writer.open(path, lambda path=path: open_file(path, SMALL, SavingFormat.CBF, METADATA))
        writer.submit_frame(frame, SavingFormat.CBF)
    writer.close()
    assert writer.wait_idle(10)
    writer.shutdown()
    assert listener.saved == [0, 1, 2]
    assert listener.closed == [(f"f_{i:04d}.cbf", 1, None) for i in range(3)]
    for frame in taken:
        np.testing.assert_array_equal(fabio.open(str(tmp_path / f"f_{frame.index:04d}.cbf")).data, frame.data)


def test_append_adds_the_next_entry(tmp_path):
    """Lima's APPEND policy: each acquisition is a new entry_NNNN of the same file."""
    path = tmp_path / "appended.h5"
    first, second = frames(2)
    for frame in (first, second):
        appended = open_file(path, SMALL, SavingFormat.HDF5BS, METADATA, append=True)
        appended.write(frame)
        appended.close()
    assert appended.data_path == "/entry_0001/measurement/data"
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry_0001"  # the newest acquisition, as Lima points it
        np.testing.assert_array_equal(f[DATA_PATH][0], first.data)
        np.testing.assert_array_equal(f[appended.data_path][0], second.data)
        assert f["entry_0001/sample"]["depends_on"][()] == b"/entry_0001/sample/transformations/omega"
        assert len(nxmx.NXmx(f).entries) == 2
