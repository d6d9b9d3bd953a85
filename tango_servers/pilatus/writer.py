"""Detector files written a frame at a time by one thread off the Tango threads.

HDF5 files (`NexusFile`) have Lima's layout with the NXmx geometry (see `nexus.py`), one file
per `saving_frame_per_file` frames; CBF files (`cbf.CbfFile`) hold a data block per frame. `open_file`
opens the kind a `saving_format` names, created or added to as `saving_overwrite_policy` says
(`OpenMode`).

HDF5 files are in SWMR mode from their first frame and every frame is flushed, so a reader opening the file with
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
import enum
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import hdf5plugin
import numpy as np

from .backend import Frame, Geometry
from .cbf import CbfFile
from .nexus import (
    DATA_PATH,
    FileMetadata,
    OpenMode,
    SavingError,
    file_exists_error,
    last_entry,
    next_entry,
    now_iso,
    open_layout,
    os_reason,
    write_header,
    write_layout,
)

__all__ = [
    "DATA_PATH",
    "CbfFile",
    "DetectorFile",
    "FileMetadata",
    "NexusFile",
    "OpenMode",
    "SavingError",
    "SavingFormat",
    "WriterThread",
    "open_file",
]

logger = logging.getLogger(__name__)

_BSHUF_BLOCK_BYTES = 8192  # bitshuffle's own default block size


class SavingFormat(enum.IntEnum):
    """LimaCCDs `saving_format` labels this server writes (CtSaving's names)."""

    HDF5 = 0
    HDF5BS = 1  # bitshuffle-LZ4 compressed
    CBF = 2  # one frame per file, CBF_BYTE_OFFSET, PILATUS_1.2 header


SUFFIX = {SavingFormat.HDF5: ".h5", SavingFormat.HDF5BS: ".h5", SavingFormat.CBF: ".cbf"}
"""CtSaving's default suffix of each format."""
HDF5_FORMATS = frozenset({SavingFormat.HDF5, SavingFormat.HDF5BS})


class NexusFile:
    """One HDF5 file being written in Lima's layout with NXmx metadata, a frame (one chunk) at a time.

    `mode` (from saving_overwrite_policy, as CtSaving_Hdf5 opens files): CREATE a new file;
    APPEND the frames after those of an existing file's last entry (Lima writes neither its
    header nor its end_time again); NEW_SET the acquisition as an existing file's next entry, the
    root `default` pointing at it. A missing file is created in every mode. The header (the
    common header and the first frame's own) is written with the first frame, as Lima does,
    and SWMR starts then: no object can be created in an HDF5 file once SWMR writing is on.
    """

    def __init__(
        self,
        path: Path,
        geometry: Geometry,
        saving_format: SavingFormat,
        metadata: FileMetadata,
        *,
        mode: OpenMode = OpenMode.CREATE,
    ):
        self.path = Path(path)
        self.geometry = geometry
        self.saving_format = SavingFormat(saving_format)
        self.metadata = metadata
        self.frames = 0
        self._start = time.time()
        existing = mode != OpenMode.CREATE and self.path.exists()
        if existing and not h5py.is_hdf5(self.path):
            raise SavingError(
                f"File {self.path} is not an HDF5 file, bad or corrupted format: saving_overwrite_policy "
                f"{'APPEND' if mode == OpenMode.APPEND else 'MULTISET'} adds only to HDF5 files"
            )
        try:
            self._file = h5py.File(self.path, "r+" if existing else "w-", libver="latest")
        except FileExistsError as exc:
            raise file_exists_error(self.path) from exc
        except OSError as exc:
            raise SavingError(f"cannot {'open' if existing else 'create'} {self.path}: {os_reason(exc)}") from exc
        self._added_entry: tuple[str, object] | None = None  # NEW_SET in an existing file: (entry, old default)
        try:
            paths = last_entry(self._file) if existing and mode == OpenMode.APPEND else None
            if paths is not None:
                self._layout = open_layout(self._file, paths, geometry)
                self.saving_format = _format_of(self._layout.frames)  # the file's own encoding
                self._offset = self._layout.frames.shape[0]
            else:
                paths = next_entry(self._file)
                if existing:
                    self._added_entry = (paths.entry, self._file.attrs.get("default"))
                filters: Mapping[str, Any] = {}
                if self.saving_format == SavingFormat.HDF5BS:
                    filters = hdf5plugin.Bitshuffle(cname="lz4")
                self._layout = write_layout(self._file, geometry, metadata, paths, **filters)
                self._offset = 0
            self.data_path = paths.data
            self._file.flush()
        except Exception:
            self._file.close()
            raise

    def write(
        self, frame: Frame, chunk: bytes | np.ndarray | None = None, header: Mapping[str, str] | None = None
    ) -> None:
        """Append one frame (with its time and omega) and flush it, so SWMR readers see it.

        `chunk` is the frame already compressed for this file's format (`encode_chunk`); `header`
        is the frame's own Lima header (written with the file's first frame only, as Lima does).
        """
        data = frame.data
        if data.shape != self.geometry.shape or data.dtype != np.dtype(self.geometry.dtype):
            raise SavingError(
                f"frame {frame.index} is {data.dtype} {data.shape}, the file expects "
                f"{self.geometry.dtype} {self.geometry.shape}"
            )
        if chunk is None:
            chunk = encode_chunk(data, self.saving_format)
        layout = self._layout
        n = self._offset + self.frames
        try:
            if not self._file.swmr_mode:
                if layout.header is not None:
                    write_header(layout.header, {**dict(self.metadata.header), **(header or {})})
                self._file.swmr_mode = True
            layout.frames.resize(n + 1, axis=0)
            layout.frames.id.write_direct_chunk((n, 0, 0), chunk)
            for dataset, value in (
                (layout.time_of_frame, frame.timestamp - self._start),
                (layout.omega, self.metadata.omega(frame.sample_position, frame.index)),
            ):
                if dataset is not None:
                    dataset.resize(n + 1, axis=0)
                    dataset[n] = value
                    dataset.flush()
            layout.frames.flush()
        except OSError as exc:
            raise SavingError(f"cannot write frame {frame.index} to {self.path}: {os_reason(exc)}") from exc
        self.frames += 1

    def close(self) -> None:
        """Record the end time and close; safe to call twice. An entry added to an existing file
        that got no frame is removed again, so the file is as it was."""
        if not self._file.id.valid:
            return
        try:
            if self._added_entry is not None and self.frames == 0:
                entry, default = self._added_entry
                del self._file[entry]
                if default is not None:
                    self._file.attrs["default"] = default
            elif self._layout.end_time is not None:
                self._layout.end_time[()] = np.bytes_(now_iso().encode()[:32])
            self._file.flush()
        finally:
            self._file.close()


def _format_of(frames: h5py.Dataset) -> SavingFormat:
    """The saving format an existing frames dataset is encoded in (bitshuffle-LZ4 or plain)."""
    return SavingFormat.HDF5BS if str(hdf5plugin.BSHUF_ID) in frames._filters else SavingFormat.HDF5


class DetectorFile(Protocol):
    """An open file the writer thread appends frames to (NexusFile, CbfFile)."""

    path: Path
    frames: int
    data_path: str  # where the frames are inside the file ("" when the format has no inner path)

    # Read-only, so a NexusFile's SavingFormat and a CbfFile's plain int (cbf.py cannot import
    # this module) both match.
    @property
    def saving_format(self) -> int: ...

    def write(
        self, frame: Frame, chunk: bytes | np.ndarray | None = None, header: Mapping[str, str] | None = None
    ) -> None: ...

    def close(self) -> None: ...


def open_file(
    path: Path,
    geometry: Geometry,
    saving_format: SavingFormat,
    metadata: FileMetadata,
    *,
    mode: OpenMode = OpenMode.CREATE,
) -> DetectorFile:
    """A file of `saving_format` at `path`, opened as `mode` says; SavingError when it exists
    (CREATE), is not of that format (APPEND, NEW_SET) or cannot be created."""
    if SavingFormat(saving_format) == SavingFormat.CBF:
        return CbfFile(path, geometry, saving_format, metadata, mode=mode)
    return NexusFile(path, geometry, saving_format, metadata, mode=mode)


def encode_chunk(data: np.ndarray, saving_format: SavingFormat) -> bytes | np.ndarray:
    """The bytes of one frame's chunk as stored in a file of `saving_format`."""
    if saving_format == SavingFormat.HDF5BS:
        return bitshuffle_lz4_chunk(data)
    return np.ascontiguousarray(data)  # HDF5 stores it as is; fabio compresses CBF itself


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
    _HEADER.pack_into(out.data, 0, data.nbytes, block * data.itemsize)
    size = _BSHUF.bshuf_compress_lz4(data.ctypes.data, out[_HEADER.size :].ctypes.data, data.size, data.itemsize, block)
    if size < 0:
        raise SavingError(f"bitshuffle-LZ4 compression failed (error {size})")
    return out[: _HEADER.size + size].tobytes()


class WriterListener(Protocol):
    """Reports from the writer thread."""

    def file_opened(self, path: Path) -> None: ...

    def frame_saved(self, index: int) -> None: ...

    def file_closed(self, path: Path, frames: int, error: str | None) -> None: ...


@dataclass(frozen=True)
class _Open:
    path: Path
    opener: Callable[[], DetectorFile]
    announce: bool


@dataclass(frozen=True)
class _Close:
    pass


@dataclass(frozen=True)
class _FrameJob:
    frame: Frame
    saving_format: SavingFormat
    chunk: concurrent.futures.Future | None  # compressing in the pool, or None: encode when writing
    header: Mapping[str, str] | None  # the frame's own Lima header (setImageHeader)


@dataclass(frozen=True)
class _Call:
    function: Callable[[], None]


class WriterThread:
    """Writes frames to files (HDF5 or CBF) on its own thread, in submission order.

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
        self._max_queued_bytes = max_queued_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=self._depth(frame_nbytes))
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(compression_threads, thread_name_prefix="pilatus-compress")
            if compression_threads > 0
            else None
        )
        self._file: DetectorFile | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pilatus-writer", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.maxsize

    def _depth(self, frame_nbytes: int) -> int:
        return max(4, min(1024, self._max_queued_bytes // max(1, frame_nbytes)))

    def set_frame_nbytes(self, frame_nbytes: int) -> None:
        """Size the queue for frames of `frame_nbytes` (the image operations changed them)."""
        with self._queue.mutex:
            self._queue.maxsize = self._depth(frame_nbytes)
            self._queue.not_full.notify_all()

    def adopt(self, nexus_file: DetectorFile) -> None:
        """Write the following frames into a file opened (and announced) elsewhere."""
        self._put(_Open(nexus_file.path, lambda: nexus_file, announce=False))

    def open(self, path: Path, opener: Callable[[], DetectorFile]) -> None:
        """Open the next file on the writer thread (roll-over during an acquisition); reports
        `file_opened`, or `file_closed(path, 0, error)` when it cannot be created."""
        self._put(_Open(Path(path), opener, announce=True))

    def submit_frame(self, frame: Frame, saving_format: SavingFormat, header: Mapping[str, str] | None = None) -> None:
        """Queue a frame (and its own header) for the current file (of `saving_format`); blocks
        while the queue is full.

        Compression starts at once; the producer then waits for room in the queue, so at most
        one chunk more than the queue holds is ever in flight.
        """
        future = self._pool.submit(encode_chunk, frame.data, saving_format) if self._pool else None
        self._put(_FrameJob(frame, saving_format, future, header))

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
                self._file.write(item.frame, chunk, item.header)
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
