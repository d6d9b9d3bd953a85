"""The NeXus writer without Tango: layout, compression, SWMR reading, failures."""

import subprocess
import sys
import threading

import h5py
import hdf5plugin
import numpy as np
import pytest

from tango_servers.pilatus.backend import Frame, Geometry
from tango_servers.pilatus.writer import (
    DATA_PATH,
    HDF5_FORMATS,
    FileMetadata,
    NexusFile,
    SavingError,
    SavingFormat,
    WriterThread,
    bitshuffle_lz4_chunk,
)

SMALL = Geometry(125, 67, 60, 30, 5, 7)


def frames(n, geometry=SMALL, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        data = rng.poisson(3.0, geometry.shape).astype(np.int32)
        data[geometry.gap_mask()] = -1
        yield Frame(i, data, 0.0)


@pytest.mark.parametrize("saving_format", sorted(HDF5_FORMATS))
def test_frames_round_trip_in_nexus_layout(tmp_path, saving_format):
    path = tmp_path / "f.h5"
    written = list(frames(3))
    nexus = NexusFile(path, SMALL, saving_format, FileMetadata(expo_time=0.5, trigger_mode="EXTERNAL_GATE"))
    for frame in written:
        nexus.write(frame)
    nexus.close()
    with h5py.File(path, "r") as f:
        data = f[DATA_PATH]
        assert data.shape == (3, 67, 125) and data.chunks == (1, 67, 125)
        np.testing.assert_array_equal(data[:], np.stack([f.data for f in written]))
        assert f["/entry_0000/data/data"].id == data.id  # NXdata links the detector data
        assert f["/entry_0000/data"].attrs["signal"] == "data"
        det = f["/entry_0000/instrument/Pilatus"]
        assert det["count_time"][()] == 0.5 and det["count_time"].attrs["units"] == "s"
        assert det["acquisition_mode"][()] == b"gated"
        assert (det["pixel_mask"][()] == SMALL.gap_mask()).all()
        assert f["/entry_0000/end_time"][()].strip()
        if saving_format == SavingFormat.HDF5BS:
            assert str(hdf5plugin.BSHUF_ID) in data._filters


def test_direct_chunks_match_the_hdf5_filter(tmp_path):
    """Our chunk bytes decode with hdf5plugin exactly as its own filter's output does."""
    data = next(frames(1)).data
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = f.create_dataset("d", (1, *SMALL.shape), chunks=(1, *SMALL.shape), dtype="i4", **hdf5plugin.Bitshuffle())
        ds.id.write_direct_chunk((0, 0, 0), bitshuffle_lz4_chunk(data))
        np.testing.assert_array_equal(ds[0], data)


def test_swmr_reader_sees_frames_while_writing(tmp_path):
    path = tmp_path / "live.h5"
    nexus = NexusFile(path, SMALL, SavingFormat.HDF5BS, FileMetadata())
    stream = frames(4)
    nexus.write(next(stream))
    with h5py.File(path, "r", swmr=True) as reader:
        data = reader[DATA_PATH]
        assert data.shape[0] == 1
        nexus.write(next(stream))
        nexus.write(next(stream))
        data.refresh()
        assert data.shape[0] == 3 and data[2].max() > 0
    nexus.close()


def test_existing_file_and_missing_directory(tmp_path):
    (tmp_path / "taken.h5").write_text("keep me")
    with pytest.raises(SavingError, match="already exists"):
        NexusFile(tmp_path / "taken.h5", SMALL, SavingFormat.HDF5, FileMetadata())
    assert (tmp_path / "taken.h5").read_text() == "keep me"
    with pytest.raises(SavingError, match="No such file"):
        NexusFile(tmp_path / "nowhere" / "f.h5", SMALL, SavingFormat.HDF5, FileMetadata())


class Listener:
    def __init__(self):
        self.saved, self.closed, self.opened = [], [], []
        self.lock = threading.Lock()

    def file_opened(self, path):
        self.opened.append(path)

    def frame_saved(self, index):
        self.saved.append(index)

    def file_closed(self, path, count, error):
        self.closed.append((path.name, count, error))


def test_writer_thread_keeps_order_and_reports_failures(tmp_path):
    listener = Listener()
    writer = WriterThread(listener, max_queued_bytes=0)  # smallest queue: back-pressure at work
    stream = frames(6)
    writer.adopt(NexusFile(tmp_path / "a.h5", SMALL, SavingFormat.HDF5BS, FileMetadata()))
    for _ in range(3):
        writer.submit_frame(next(stream), SavingFormat.HDF5BS)
    writer.close()
    writer.open(tmp_path / "gone" / "b.h5", lambda: NexusFile(tmp_path / "gone" / "b.h5", SMALL, 1, FileMetadata()))
    for _ in range(3):
        writer.submit_frame(next(stream), SavingFormat.HDF5)  # no file: discarded, never blocks
    assert writer.wait_idle(10)
    writer.shutdown()
    assert listener.saved == [0, 1, 2]
    assert listener.closed[0] == ("a.h5", 3, None)
    assert listener.closed[1][0] == "b.h5" and "No such file" in listener.closed[1][2]
    assert listener.opened == []  # adopt() is announced by whoever opened the file


def test_writer_queue_holds_max_queued_bytes_of_the_frames_as_saved():
    """The queue's depth follows the frame size the image operations give (4 .. 1024 frames)."""
    writer = WriterThread(Listener(), max_queued_bytes=100 * SMALL.frame_nbytes, frame_nbytes=SMALL.frame_nbytes)
    try:
        assert writer.queue_depth == 100
        writer.set_frame_nbytes(SMALL.frame_nbytes // 4)  # binned 2 x 2
        assert writer.queue_depth == 400
        writer.set_frame_nbytes(SMALL.frame_nbytes * 100)
        assert writer.queue_depth == 4
    finally:
        writer.shutdown()


def test_compression_falls_back_to_hdf5plugin_library(tmp_path):
    """Without the bitshuffle package, hdf5plugin's copy of the same C function is used."""
    script = f"""
import sys
sys.modules["bitshuffle"] = None  # as if not installed
import h5py, hdf5plugin, numpy as np
from tango_servers.pilatus import writer
assert "hdf5plugin" in writer._BSHUF._name, writer._BSHUF._name
data = np.arange(67 * 125, dtype=np.int32).reshape(67, 125)
with h5py.File({str(tmp_path / "f.h5")!r}, "w") as f:
    ds = f.create_dataset("d", (1, 67, 125), chunks=(1, 67, 125), dtype="i4", **hdf5plugin.Bitshuffle())
    ds.id.write_direct_chunk((0, 0, 0), writer.bitshuffle_lz4_chunk(data))
    assert (ds[0] == data).all()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
