"""Pilatus files as the field's readers see them: Lima's HDF5 layout (fabio), NXmx (DIALS's
`nxmx` reader) and CBF (fabio), written by the writer without Tango."""

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import nxmx
import pytest

from tango_servers.pilatus.backend import Frame, Geometry
from tango_servers.pilatus.cbf import read_data_blocks
from tango_servers.pilatus.nexus import FRAMES_PATH, PIXEL_SIZE_M
from tango_servers.pilatus.writer import (
    DATA_PATH,
    FileMetadata,
    OpenMode,
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
        assert acquisition["nb_frames"][()] == 3 and acquisition["trigger_mode"][()] == b"ExtGate"  # Lima's TrigMode
        assert acquisition["mode"][()] == b"Single" and "accumulation" not in acquisition
        image = detector["image_operation"]
        assert image["region_of_interest/xsize"][()] == 125 and image["dimension/ysize"][()] == 67
        assert image["rotation"][()] == b"Rotation_0" and image["bin_mode"][()] == b"Bin_Sum"
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


def test_cbf_honours_abort_and_removes_a_file_without_frame(tmp_path):
    (first,) = frames(1)
    path = tmp_path / "one.cbf"
    cbf = open_file(path, SMALL, SavingFormat.CBF, METADATA)
    with pytest.raises(SavingError, match="already exists and saving_overwrite_policy is ABORT"):
        open_file(path, SMALL, SavingFormat.CBF, METADATA)
    cbf.write(first)
    cbf.close()
    np.testing.assert_array_equal(fabio.open(str(path)).data, first.data)
    unused = open_file(tmp_path / "unused.cbf", SMALL, SavingFormat.CBF, METADATA)
    unused.close()
    assert not (tmp_path / "unused.cbf").exists()  # no frame, no file


def test_cbf_append_adds_a_data_block_with_lima_headers(tmp_path):
    """CtSaving_Cbf under APPEND / MULTISET: the file opened with "a", a data block per frame; Lima's
    headers as CIF items (category/column -> _category.column, a bare key in _Misc)."""
    first, second = frames(2)
    path = tmp_path / "scan_0000.cbf"
    cbf = open_file(path, SMALL, SavingFormat.CBF, METADATA, mode=OpenMode.APPEND)
    cbf.write(first, header={"omega/start": "10.0"})
    cbf.close()
    again = open_file(path, SMALL, SavingFormat.CBF, METADATA, mode=OpenMode.APPEND)
    again.write(second, header={"sample": "thaumatin"})  # the frame's header overrides the common one
    again.close()
    image = fabio.open(str(path))
    np.testing.assert_array_equal(image.data, first.data)
    blocks = read_data_blocks(path)
    assert [b.header["_Misc.beamline"] for b in blocks] == ["sim", "sim"]
    assert [b.header["_Misc.sample"] for b in blocks] == ["lysozyme", "thaumatin"]
    assert blocks[0].header["_omega.start"] == "10.0" and "_omega.start" not in blocks[1].header
    for block, frame in zip(blocks, (first, second), strict=True):
        np.testing.assert_array_equal(block.data, frame.data)
        assert block.pilatus_headers["Beam_xy"] == (61.5, 30.25)
    content = path.read_bytes()  # the first block named after the file, the appended one as Lima's mini-header CBF
    assert b"\ndata_scan_0000\r" in content and b"\ndata_image_1\r" in content
    # A refused append leaves the file as it was.
    size = path.stat().st_size
    broken = open_file(path, SMALL, SavingFormat.CBF, METADATA, mode=OpenMode.APPEND)
    with pytest.raises(SavingError, match="the file expects"):
        broken.write(Frame(2, np.zeros((3, 3), np.int32), 0.0, None))
    broken.close()
    assert path.stat().st_size == size and len(read_data_blocks(path)) == 2


def written_file(path, taken, mode=OpenMode.CREATE, saving_format=SavingFormat.HDF5BS, headers=None) -> str:
    """`taken` written into `path` as one acquisition; the data path it reports."""
    nexus = open_file(path, SMALL, saving_format, METADATA, mode=mode)
    for frame in taken:
        nexus.write(frame, header=(headers or {}).get(frame.index))
    nexus.close()
    return nexus.data_path


def test_hdf5_append_puts_the_frames_after_the_last_entry(tmp_path):
    """Lima's APPEND (CtSaving_Hdf5: the last entry's dataset extended): both acquisitions in
    entry_0000; the header is the first acquisition's; plain frames join a bitshuffle file as bitshuffle."""
    path = tmp_path / "scan_0000.h5"
    taken = frames(3)
    assert written_file(path, taken[:2], OpenMode.APPEND, headers={0: {"run": "1"}}) == DATA_PATH
    assert written_file(path, taken[2:], OpenMode.APPEND, SavingFormat.HDF5, {2: {"run": "2"}}) == DATA_PATH
    stacked = np.stack([frame.data for frame in taken])
    with h5py.File(path, "r") as f:
        assert list(f) == ["entry_0000"]
        np.testing.assert_array_equal(f[DATA_PATH][()], stacked)
        assert "32008" in f[FRAMES_PATH]._filters
        assert f["entry_0000/instrument/Pilatus/header/run"][()] == b"1"
        assert f["entry_0000/instrument/Pilatus/time_of_frame"].shape == (3,)
    image = fabio.open(str(path))
    assert image.nframes == 3
    for frame in taken:
        np.testing.assert_array_equal(image.getframe(frame.index).data, frame.data)


def test_hdf5_multiset_adds_the_next_entry(tmp_path):
    """Lima's MULTISET: each acquisition a new entry_NNNN of the same file, the root default on the newest."""
    path = tmp_path / "scan_0000.h5"
    first, second, third = frames(3)
    assert written_file(path, [first, second], OpenMode.NEW_SET) == DATA_PATH
    assert written_file(path, [third], OpenMode.NEW_SET) == "/entry_0001/measurement/data"
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry_0001"
        np.testing.assert_array_equal(f[DATA_PATH][()], np.stack([first.data, second.data]))
        np.testing.assert_array_equal(f["/entry_0001/measurement/data"][0], third.data)
        assert f["entry_0001/sample/depends_on"][()] == b"/entry_0001/sample/transformations/omega"
        assert len(nxmx.NXmx(f).entries) == 2
    with fabio.open(str(path)) as newest:
        assert newest.nframes == 1  # fabio's LimaImage reads the root's default entry
    with fabio.open(f"{path}::{DATA_PATH}") as older:  # and any entry by its path
        assert older.nframes == 2
        np.testing.assert_array_equal(older.getframe(1).data, second.data)
    # An entry that gets no frame (a dropped prepareAcq) is removed again: the file is as it was.
    unused = open_file(path, SMALL, SavingFormat.HDF5BS, METADATA, mode=OpenMode.NEW_SET)
    unused.close()
    with h5py.File(path, "r") as f:
        assert list(f) == ["entry_0000", "entry_0001"] and f.attrs["default"] == "entry_0001"


def test_a_refused_append_leaves_the_file_readable(tmp_path):
    path = tmp_path / "scan_0000.h5"
    (first,) = frames(1)
    written_file(path, [first])
    other = Geometry(60, 30, 60, 30, 0, 0)
    with pytest.raises(SavingError, match="mismatching image dimensions"):
        open_file(path, other, SavingFormat.HDF5BS, METADATA, mode=OpenMode.APPEND)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f[DATA_PATH][()], first.data[None])
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    for mode in (OpenMode.APPEND, OpenMode.NEW_SET):
        with pytest.raises(SavingError, match="is not an HDF5 file"):
            open_file(text, SMALL, SavingFormat.HDF5BS, METADATA, mode=mode)
    assert text.read_text() == "not HDF5"


def test_the_header_is_the_first_frames(tmp_path):
    """CtSaving_Hdf5 writes the header once, with the first frame: the common header and that frame's own."""
    path = tmp_path / "scan_0000.h5"
    written_file(path, frames(2), headers={0: {"sample": "thaumatin", "omega": "0.0"}, 1: {"late": "x"}})
    with h5py.File(path, "r") as f:
        header = f["entry_0000/instrument/Pilatus/header"]
        assert header.attrs["NX_class"] == "NXcollection"
        assert {key: header[key][()] for key in header} == {
            "beamline": b"sim",
            "sample": b"thaumatin",
            "omega": b"0.0",
        }


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
