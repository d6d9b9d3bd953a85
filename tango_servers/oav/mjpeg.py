"""A camera backend reading any MJPEG-over-HTTP stream (no Tango here).

MJPEG over HTTP is what network OAV cameras and areaDetector's MJPEG server deliver: one
long `multipart/x-mixed-replace` response whose parts are JPEG images. `read_parts` parses
it (with or without Content-Length per part); `MjpegCamera` keeps one worker thread that
connects, decodes and hands frames to listeners, and reconnects when the stream drops.

Frame numbers: when a part carries an `X-Frame-Number` header (this package's
`oav-mjpeg-stream` sends one) and it is higher than the last counter, the frame keeps that
number, so counters match the source; otherwise frames are counted as they arrive.
"""

import contextlib
import http.client
import io
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from .backend import Frame, FrameListener, ImageMode, UnsupportedSetting

log = logging.getLogger(__name__)

FRAME_NUMBER_HEADER = "x-frame-number"
TIMESTAMP_HEADER = "x-timestamp"
MAX_PART_BYTES = 64 * 1024 * 1024
FRAME_RATE_LIMITS = (0.1, 120.0)


class MjpegError(Exception):
    """The HTTP response is not a usable MJPEG stream."""


@dataclass(frozen=True)
class Part:
    """One part of a multipart stream: lower-case headers and the body bytes."""

    headers: dict[str, str]
    body: bytes


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/x-mixed-replace; boundary=...` content type."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/x-mixed-replace":
        raise MjpegError(f"not an MJPEG stream: Content-Type is {content_type!r}")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1")
    raise MjpegError(f"MJPEG stream without a boundary: Content-Type is {content_type!r}")


def read_parts(stream: BinaryIO, boundary: bytes) -> Iterator[Part]:
    """Yield the parts of a multipart body read from `stream` until it ends.

    Accepts a boundary with or without the leading "--" in the header (servers differ) and
    parts with or without Content-Length.
    """
    bare = boundary[2:] if boundary.startswith(b"--") else boundary
    delimiters = {b"--" + bare, bare, b"--" + bare + b"--"}
    line = stream.readline()
    while line and line.strip() not in delimiters:  # preamble
        line = stream.readline()
    while line:
        if line.strip().endswith(b"--" + bare + b"--"):
            return  # closing delimiter
        headers: dict[str, str] = {}
        while True:
            line = stream.readline()
            if not line:
                return
            if not line.strip():
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            size = int(headers["content-length"])
            if not 0 <= size <= MAX_PART_BYTES:
                raise MjpegError(f"MJPEG part of {size} bytes is out of range")
            body = _read_exactly(stream, size)
            line = stream.readline()
            while line and line.strip() not in delimiters:
                line = stream.readline()
        else:
            chunks = []
            line = stream.readline()
            while line and line.strip() not in delimiters:
                chunks.append(line)
                line = stream.readline()
            body = b"".join(chunks)
            body = body[:-2] if body.endswith(b"\r\n") else body.rstrip(b"\n")
        yield Part(headers, body)


def decode_jpeg(data: bytes, mode: ImageMode) -> np.ndarray:
    """Decode JPEG bytes into a uint8 (h, w) or (h, w, 3) array."""
    with Image.open(io.BytesIO(data)) as img:
        pil_mode = "L" if mode is ImageMode.MONO8 else "RGB"
        img.draft(pil_mode, img.size)  # libjpeg decodes straight to grey when asked
        return np.asarray(img.convert(pil_mode))


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode a uint8 (h, w) or (h, w, 3) array as JPEG."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()


class MjpegCamera:
    """A `CameraBackend` fed by an MJPEG-over-HTTP URL such as http://127.0.0.1:8080/stream.mjpg."""

    def __init__(
        self,
        url: str,
        mode: ImageMode | str = ImageMode.MONO8,
        max_frame_rate: float = 25.0,
        timeout: float = 5.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"MJPEG URL {url!r} must look like http://host:port/path")
        self.url = url
        self._mode = ImageMode.parse(mode)
        self._max_rate = _checked_rate(max_frame_rate)
        self._timeout = timeout
        self._reconnect_delay = reconnect_delay
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._listeners: list[FrameListener] = []
        self._connection: http.client.HTTPConnection | None = None
        self._acquiring = False
        self._closed = False
        self._counter = 0
        self._last: Frame | None = None
        self._tokens = 1.0
        self._last_part = time.monotonic()
        self._frame_times: deque[float] = deque(maxlen=64)
        self._status = f"MJPEG stream {url} not started"
        self._thread = threading.Thread(target=self._run, name="oav-mjpeg", daemon=True)
        self._thread.start()

    # -- CameraBackend -------------------------------------------------------------------------
    @property
    def mode(self) -> ImageMode:
        return self._mode

    @property
    def acquiring(self) -> bool:
        return self._acquiring

    def start(self) -> None:
        self._acquiring = True
        self._wake.set()

    def stop(self) -> None:
        self._acquiring = False
        self._wake.set()
        self._disconnect()

    @property
    def frame_rate(self) -> float:
        """The highest rate frames are delivered at; faster streams are thinned out."""
        return self._max_rate

    def set_frame_rate(self, hz: float) -> None:
        self._max_rate = _checked_rate(hz)

    @property
    def measured_frame_rate(self) -> float:
        times = list(self._frame_times)
        if not self._acquiring or len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def exposure(self) -> float:
        return math.nan

    def set_exposure(self, seconds: float) -> None:
        raise UnsupportedSetting("an MJPEG stream does not let clients set the exposure")

    @property
    def gain(self) -> float:
        return math.nan

    def set_gain(self, gain: float) -> None:
        raise UnsupportedSetting("an MJPEG stream does not let clients set the gain")

    def last_frame(self) -> Frame | None:
        return self._last

    def add_frame_listener(self, listener: FrameListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def status(self) -> str:
        return self._status

    def close(self) -> None:
        self._closed = True
        self._acquiring = False
        self._wake.set()
        self._disconnect()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    # -- worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            if not self._acquiring:
                self._status = f"MJPEG stream {self.url} stopped after frame {self._counter}"
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._read_stream()
            except Exception as exc:
                if self._acquiring and not self._closed:
                    self._status = f"cannot read MJPEG stream {self.url}: {exc}; retrying"
                    log.warning("%s", self._status)
                    self._wake.wait(self._reconnect_delay)
                    self._wake.clear()
            finally:
                self._disconnect()

    def _read_stream(self) -> None:
        parts = urlsplit(self.url)
        if parts.hostname is None:
            raise ValueError(f"MJPEG stream URL {self.url!r} names no host")
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = cls(parts.hostname, parts.port, timeout=self._timeout)
        with self._lock:
            self._connection = connection
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request("GET", path, headers={"Accept": "multipart/x-mixed-replace"})
        response = connection.getresponse()
        if response.status != 200:
            raise MjpegError(f"HTTP {response.status} {response.reason}")
        boundary = boundary_of(response.getheader("Content-Type", ""))
        self._status = f"receiving MJPEG stream {self.url}"
        for part in read_parts(response, boundary):
            if self._closed or not self._acquiring:
                return
            # Token bucket: at most max_rate frames/s on average, tolerant of network jitter.
            now = time.monotonic()
            self._tokens = min(self._tokens + (now - self._last_part) * self._max_rate, 2.0)
            self._last_part = now
            if self._tokens < 1.0:
                continue  # thinned out: not even decoded
            self._tokens -= 1.0
            self._emit(part)
        raise MjpegError("the server ended the stream")

    def _emit(self, part: Part) -> None:
        image = decode_jpeg(part.body, self._mode)
        image.flags.writeable = False
        number = _int_or_none(part.headers.get(FRAME_NUMBER_HEADER))
        self._counter = number if number is not None and number > self._counter else self._counter + 1
        timestamp = _float_or_none(part.headers.get(TIMESTAMP_HEADER)) or time.time()
        frame = Frame(self._counter, timestamp, image)
        self._last = frame
        self._frame_times.append(time.monotonic())
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(frame)
            except Exception:
                log.exception("OAV frame listener %r failed", listener)

    def _disconnect(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            # shutdown() wakes a worker blocked in recv(); close() alone would not.
            with contextlib.suppress(OSError, AttributeError):
                connection.sock.shutdown(2)
            connection.close()


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise MjpegError("the stream ended inside a frame")
        data += more
    return data


def _checked_rate(hz: float) -> float:
    low, high = FRAME_RATE_LIMITS
    hz = float(hz)
    if not low <= hz <= high:
        raise ValueError(f"frame rate {hz:g} is outside {low:g} .. {high:g}")
    return hz


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
