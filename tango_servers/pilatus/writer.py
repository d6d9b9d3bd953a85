"""HDF5 files in the NeXus layout, written a frame at a time by one thread off the Tango threads.

Layout (one file per `saving_frame_per_file` frames)::

    /entry                          NXentry    (default -> data)
      start_time, end_time
      /instrument                   NXinstrument
        /detector                   NXdetector
          data                      (frames, rows, columns) int32, one chunk per frame
          count_time, frame_time, dead_time, threshold_energy, gain_setting,
          trigger_mode, trigger_source, acquisition_mode, frames_requested,
          x_pixel_size, y_pixel_size, sensor_material, sensor_thickness, saturation_value,
          pixel_mask                (bit 0 set on module gaps)
      /data                         NXdata     (signal -> data, a hard link to the detector data)

Files are opened in SWMR mode and every frame is flushed, so a reader opening the file with
`h5py.File(path, "r", swmr=True)` and calling `dataset.refresh()` sees frames as they arrive,
and a killed server leaves a file readable up to the last flushed frame (open it with
`swmr=True`, or run `h5clear -s` on it first: HDF5 still marks it as open for writing).

The compressed format HDF5BS uses the bitshuffle-LZ4 HDF5 filter (id 32008, readable with
`import hdf5plugin`). Chunks are compressed outside HDF5, by the C function of the `bitshuffle`
package (AVX2; hdf5plugin's own copy of the filter, SSE2 only, when the package is missing)
called through ctypes, which releases the GIL: a small pool of threads compresses frames in
parallel while the writer thread stores them in order with `write_direct_chunk`, bypassing
HDF5's single-threaded filter pipeline.
"""

import concurrent.futures
import contextlib
import ctypes
import datetime
import enum
import logging
import os
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import hdf5plugin
import numpy as np

from .backend import Frame, Geometry

logger = logging.getLogger(__name__)

DATA_PATH = "/entry/instrument/detector/data"
PIXEL_SIZE_M = 172e-6
SENSOR_THICKNESS_M = 450e-6
SATURATION_VALUE = 1048575  # 20-bit counters
_BSHUF_BLOCK_BYTES = 8192  # bitshuffle's own default block size
_GAP_BIT = 1  # NXdetector pixel_mask bit 0: gap (no sensor)


class SavingFormat(enum.IntEnum):
    """LimaCCDs `saving_format` labels this server writes."""

    HDF5 = 0
    HDF5BS = 1  # bitshuffle-LZ4 compressed


class OverwritePolicy(enum.IntEnum):
    """LimaCCDs `saving_overwrite_policy` labels this server supports."""

    ABORT = 0
    OVERWRITE = 1


@dataclass(frozen=True)
class FileMetadata:
    """What the file records about the acquisition, written once at open."""

    expo_time: float = 1.0
    latency_time: float = 0.0
    trigger_mode: str = "INTERNAL_TRIGGER"
    trigger_source: str = ""
    frames_requested: int = 0
    energy_threshold: float = 8.0
    threshold_gain: str = "DEFAULT"
    description: str = "Pilatus (simulated)"


_ACQUISITION_MODE = {
    "EXTERNAL_GATE": "gated",
    "EXTERNAL_TRIGGER": "triggered",
    "EXTERNAL_TRIGGER_MULTI": "triggered",
}


class SavingError(OSError):
    """A file could not be created or written; the message names the file and the cause."""


class NexusFile:
    """One HDF5 file being written in the NeXus layout, a frame (one chunk) at a time."""

    def __init__(
        self,
        path: Path,
        geometry: Geometry,
        saving_format: SavingFormat,
        metadata: FileMetadata,
        *,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.geometry = geometry
        self.saving_format = SavingFormat(saving_format)
        self.frames = 0
        try:
            self._file = h5py.File(self.path, "w" if overwrite else "w-", libver="latest")
        except FileExistsError as exc:
            raise SavingError(
                f"{self.path} already exists and saving_overwrite_policy is ABORT: "
                "change saving_next_number or saving_prefix, or set the policy to OVERWRITE"
            ) from exc
        except OSError as exc:
            raise SavingError(f"cannot create {self.path}: {_os_reason(exc)}") from exc
        try:
            self._data = self._layout(metadata)
            self._end_time = self._file["entry/end_time"]
            self._file.swmr_mode = True
        except Exception:
            self._file.close()
            raise

    def _layout(self, md: FileMetadata) -> h5py.Dataset:
        g = self.geometry
        f = self._file
        entry = _group(f, "entry", "NXentry", default="data")
        entry["start_time"] = _now()
        entry.create_dataset("end_time", data=np.bytes_(" " * 32), dtype="S32")
        instrument = _group(entry, "instrument", "NXinstrument")
        det = _group(instrument, "detector", "NXdetector")
        det["description"] = md.description
        _field(det, "count_time", md.expo_time, "s")
        _field(det, "frame_time", md.expo_time + md.latency_time, "s")
        _field(det, "dead_time", md.latency_time, "s")
        _field(det, "threshold_energy", md.energy_threshold, "keV")
        det["gain_setting"] = md.threshold_gain
        det["trigger_mode"] = md.trigger_mode
        det["trigger_source"] = md.trigger_source
        if md.trigger_mode in _ACQUISITION_MODE:
            det["acquisition_mode"] = _ACQUISITION_MODE[md.trigger_mode]
        det["frames_requested"] = np.int64(md.frames_requested)
        _field(det, "x_pixel_size", PIXEL_SIZE_M, "m")
        _field(det, "y_pixel_size", PIXEL_SIZE_M, "m")
        det["sensor_material"] = "Si"
        _field(det, "sensor_thickness", SENSOR_THICKNESS_M, "m")
        det["saturation_value"] = np.int64(SATURATION_VALUE)
        mask = g.gap_mask().astype(np.uint32) * _GAP_BIT
        det.create_dataset("pixel_mask", data=mask, chunks=g.shape, compression="gzip", compression_opts=1)
        filters = hdf5plugin.Bitshuffle(cname="lz4") if self.saving_format == SavingFormat.HDF5BS else {}
        data = det.create_dataset(
            "data",
            shape=(0, *g.shape),
            maxshape=(None, *g.shape),
            chunks=(1, *g.shape),
            dtype=np.dtype(g.dtype),
            **filters,
        )
        data.attrs["units"] = "counts"
        data.attrs["interpretation"] = "image"
        nxdata = _group(entry, "data", "NXdata", signal="data")
        nxdata["data"] = data
        return data

    def write(self, frame: Frame, chunk: bytes | np.ndarray | None = None) -> None:
        """Append one frame and flush it, so SWMR readers see it.

        `chunk` is the frame already compressed for this file's format (`encode_chunk`).
        """
        data = frame.data
        if data.shape != self.geometry.shape or data.dtype != np.dtype(self.geometry.dtype):
            raise SavingError(
                f"frame {frame.index} is {data.dtype} {data.shape}, the file expects "
                f"{self.geometry.dtype} {self.geometry.shape}"
            )
        if chunk is None:
            chunk = encode_chunk(data, self.saving_format)
        n = self.frames
        try:
            self._data.resize(n + 1, axis=0)
            self._data.id.write_direct_chunk((n, 0, 0), chunk)
            self._data.flush()
        except OSError as exc:
            raise SavingError(f"cannot write frame {frame.index} to {self.path}: {_os_reason(exc)}") from exc
        self.frames = n + 1

    def close(self) -> None:
        """Record the end time and close; safe to call twice."""
        if not self._file.id.valid:
            return
        try:
            self._end_time[()] = np.bytes_(_now().encode()[:32])
            self._file.flush()
        finally:
            self._file.close()


def encode_chunk(data: np.ndarray, saving_format: SavingFormat) -> bytes | np.ndarray:
    """The bytes of one frame's chunk as stored in a file of `saving_format`."""
    if saving_format == SavingFormat.HDF5BS:
        return bitshuffle_lz4_chunk(data)
    return np.ascontiguousarray(data)


def _bitshuffle_library() -> ctypes.CDLL:
    """The C library with `bshuf_compress_lz4`: the bitshuffle package's (AVX2) or hdf5plugin's."""
    candidates = []
    with contextlib.suppress(ImportError):
        import bitshuffle.ext

        candidates.append(bitshuffle.ext.__file__)
    candidates.append(os.path.join(hdf5plugin.PLUGIN_PATH, "libh5bshuf.so"))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
            compress, bound = library.bshuf_compress_lz4, library.bshuf_compress_lz4_bound
        except (OSError, AttributeError):
            continue
        compress.restype = ctypes.c_int64
        compress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
        bound.restype = ctypes.c_size_t
        bound.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
        return library
    raise ImportError(f"no bitshuffle library with bshuf_compress_lz4 in {candidates}")


_BSHUF = _bitshuffle_library()


def _one_openmp_thread() -> None:
    """Make bitshuffle's OpenMP loop run serially in the calling thread (a per-thread setting).

    Our compression threads already use the cores; OpenMP teams on top of them spin against
    each other on a busy machine (7 times slower, measured on 2 shared cores).
    """
    with contextlib.suppress(AttributeError):
        _BSHUF.omp_set_num_threads(1)


_HEADER = struct.Struct(">QI")  # uncompressed bytes, block size in bytes: the filter's chunk header


_scratch = threading.local()


def bitshuffle_lz4_chunk(data: np.ndarray) -> bytes:
    """`data` compressed exactly as the HDF5 bitshuffle filter (32008, LZ4) stores a chunk.

    Releases the GIL while compressing (ctypes), so several threads can compress at once. Each
    thread compresses into its own reused buffer and returns a copy of just the compressed bytes:
    a fresh worst-case-sized buffer per frame costs more in page faults than the copy.
    """
    _one_openmp_thread()
    data = np.ascontiguousarray(data)
    block = _BSHUF_BLOCK_BYTES // data.itemsize
    bound = _HEADER.size + _BSHUF.bshuf_compress_lz4_bound(data.size, data.itemsize, block)
    out = getattr(_scratch, "buffer", None)
    if out is None or len(out) < bound:
        out = _scratch.buffer = np.empty(bound, np.uint8)
    _HEADER.pack_into(out, 0, data.nbytes, block * data.itemsize)
    size = _BSHUF.bshuf_compress_lz4(data.ctypes.data, out[_HEADER.size :].ctypes.data, data.size, data.itemsize, block)
    if size < 0:
        raise SavingError(f"bitshuffle-LZ4 compression failed (error {size})")
    return out[: _HEADER.size + size].tobytes()


def _group(parent: h5py.Group, name: str, nx_class: str, **attrs: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    for key, value in attrs.items():
        group.attrs[key] = value
    return group


def _field(group: h5py.Group, name: str, value: float, units: str) -> None:
    group[name] = np.float64(value)
    group[name].attrs["units"] = units


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat()


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class WriterListener(Protocol):
    """Reports from the writer thread."""

    def file_opened(self, path: Path) -> None: ...

    def frame_saved(self, index: int) -> None: ...

    def file_closed(self, path: Path, frames: int, error: str | None) -> None: ...


@dataclass(frozen=True)
class _Open:
    path: Path
    opener: Callable[[], NexusFile]
    announce: bool


@dataclass(frozen=True)
class _Close:
    pass


@dataclass(frozen=True)
class _FrameJob:
    frame: Frame
    saving_format: SavingFormat
    chunk: concurrent.futures.Future | None  # compressing in the pool, or None: encode when writing


@dataclass(frozen=True)
class _Call:
    function: Callable[[], None]


class WriterThread:
    """Writes frames to NexusFiles on its own thread, in submission order.

    The queue is bounded (`max_queued_bytes`): `submit_frame` blocks when the disk falls
    behind, which slows the detector down instead of dropping frames. Frames are compressed
    by `compression_threads` threads as they are submitted (0: by the writer thread itself).
    After a failure the current file is closed (everything written so far stays readable),
    the listener hears `file_closed(..., error)`, and further frames are discarded until the
    next open.
    """

    def __init__(
        self,
        listener: WriterListener,
        *,
        max_queued_bytes: int = 128 * 2**20,
        frame_nbytes: int = 1,
        compression_threads: int = 2,
    ):
        self._listener = listener
        depth = max(4, min(1024, max_queued_bytes // max(1, frame_nbytes)))
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(compression_threads, thread_name_prefix="pilatus-compress")
            if compression_threads > 0
            else None
        )
        self._file: NexusFile | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pilatus-writer", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.maxsize

    def adopt(self, nexus_file: NexusFile) -> None:
        """Write the following frames into a file opened (and announced) elsewhere."""
        self._put(_Open(nexus_file.path, lambda: nexus_file, announce=False))

    def open(self, path: Path, opener: Callable[[], NexusFile]) -> None:
        """Open the next file on the writer thread (roll-over during an acquisition); reports
        `file_opened`, or `file_closed(path, 0, error)` when it cannot be created."""
        self._put(_Open(Path(path), opener, announce=True))

    def submit_frame(self, frame: Frame, saving_format: SavingFormat) -> None:
        """Queue a frame for the current file (of `saving_format`); blocks while the queue is full.

        Compression starts at once; the producer then waits for room in the queue, so at most
        one chunk more than the queue holds is ever in flight.
        """
        future = self._pool.submit(encode_chunk, frame.data, saving_format) if self._pool else None
        self._put(_FrameJob(frame, saving_format, future))

    def close(self) -> None:
        """Close the current file once the frames queued before have been written."""
        self._put(_Close())

    def call(self, function: Callable[[], None]) -> None:
        """Run `function` on the writer thread after everything queued before it."""
        self._put(_Call(function))

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.close()
        self._put(None)
        self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _put(self, item) -> None:
        with self._pending_lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._handle(item)
            except Exception:
                logger.exception("Pilatus writer: unexpected error")
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _handle(self, item) -> None:
        if isinstance(item, _FrameJob):
            if self._file is None:
                return  # no file (failed, or saving off): the frame is not saved
            try:
                chunk = item.chunk.result() if item.chunk is not None else None
                if item.saving_format != self._file.saving_format:
                    chunk = None
                self._file.write(item.frame, chunk)
            except Exception as exc:
                self._finish(f"{exc}")
                return
            self._listener.frame_saved(item.frame.index)
        elif isinstance(item, _Open):
            self._finish(None)
            try:
                self._file = item.opener()
            except Exception as exc:
                self._listener.file_closed(item.path, 0, f"{exc}")
                return
            if item.announce:
                self._listener.file_opened(self._file.path)
        elif isinstance(item, _Close):
            self._finish(None)
        elif isinstance(item, _Call):
            item.function()

    def _finish(self, error: str | None) -> None:
        nexus_file, self._file = self._file, None
        if nexus_file is None:
            return
        try:
            nexus_file.close()
        except Exception as exc:
            error = error or f"cannot close {nexus_file.path}: {exc}"
        with contextlib.suppress(Exception):
            self._listener.file_closed(nexus_file.path, nexus_file.frames, error)
