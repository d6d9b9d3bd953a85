"""`oav-mjpeg-stream`: serve the OAV simulator's frames as MJPEG over HTTP on 127.0.0.1.

    oav-mjpeg-stream --port 8080
    -> oav-mjpeg-stream: serving http://127.0.0.1:8080/stream.mjpg

Routes: `/stream.mjpg` (multipart/x-mixed-replace JPEG parts, each with `X-Frame-Number` and
`X-Timestamp` headers), `/snapshot.jpg` (the latest frame) and `/` (a page showing the stream).
Each frame is JPEG-encoded once, when the first client needs it, whatever the number of clients.
"""

import argparse
import contextlib
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .backend import Frame, ImageMode
from .mjpeg import encode_jpeg
from .sim import SimCamera

HOST = "127.0.0.1"
BOUNDARY = "oavframe"
STREAM_PATH = "/stream.mjpg"
SNAPSHOT_PATH = "/snapshot.jpg"


class JpegFrames:
    """The camera's latest frame, JPEG-encoded on demand once per frame; clients wait on it."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self.closed = False

    def on_frame(self, frame: Frame) -> None:
        with self._cond:
            self._frame = frame
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def next_after(self, counter: int, timeout: float = 5.0) -> tuple[Frame, bytes] | None:
        """The first frame newer than `counter` and its JPEG bytes; None on timeout or close."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.closed or (self._frame is not None and self._frame.counter > counter), timeout
            ):
                return None
            if self.closed:
                return None
            frame = self._frame
            assert frame is not None
            if self._jpeg is None or self._jpeg[0] != frame.counter:
                # Encoding under the lock: concurrent clients wait instead of encoding twice.
                self._jpeg = (frame.counter, encode_jpeg(frame.image, self.quality))
            return frame, self._jpeg[1]


def make_handler(frames: JpegFrames) -> type[BaseHTTPRequestHandler]:
    class MjpegHandler(BaseHTTPRequestHandler):
        server_version = "oav-mjpeg-stream"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == STREAM_PATH:
                self._stream()
            elif path == SNAPSHOT_PATH:
                self._snapshot()
            elif path in ("/", "/index.html"):
                body = (
                    f"<html><head><title>OAV</title></head><body>"
                    f'<img src="{STREAM_PATH}" alt="OAV stream"></body></html>'
                ).encode()
                self._reply(200, "text/html; charset=utf-8", body)
            else:
                self._reply(404, "text/plain", f"no such path; try {STREAM_PATH}\n".encode())

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _snapshot(self) -> None:
            latest = frames.next_after(-1)
            if latest is None:
                self._reply(503, "text/plain", b"no frame yet\n")
            else:
                self._reply(200, "image/jpeg", latest[1])

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Pragma", "no-cache")
            self.end_headers()
            counter = -1
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while True:
                    latest = frames.next_after(counter)
                    if latest is None:
                        if frames.closed:
                            return
                        continue
                    frame, jpeg = latest
                    counter = frame.counter
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                        f"X-Frame-Number: {frame.counter}\r\nX-Timestamp: {frame.timestamp:.6f}\r\n\r\n"
                    )
                    self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                    self.wfile.flush()

        def log_message(self, format: str, *args) -> None:  # one line per client, on stderr
            if "GET" in (args[0] if args else ""):
                sys.stderr.write(f"oav-mjpeg-stream: {self.address_string()} {format % args}\n")

    return MjpegHandler


def parse_args(args: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="oav-mjpeg-stream",
        description="Serve the simulated OAV camera as an MJPEG stream on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port); default 8080")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--mode", choices=[m.value for m in ImageMode], default=ImageMode.MONO8.value)
    parser.add_argument("--frame-rate", type=float, default=25.0, help="frames per second; default 25")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-95; default 90")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulator's noise and dust")
    parser.add_argument("--microns-per-pixel", type=float, default=2.87, help="image scale; default 2.87")
    for axis, unit in (("x", "mm"), ("y", "mm"), ("z", "mm"), ("omega", "deg")):
        parser.add_argument(f"--{axis}", type=float, default=0.0, help=f"goniometer {axis} in {unit}")
    parsed = parser.parse_args(args)
    if not 1 <= parsed.quality <= 95:
        parser.error("--quality must be between 1 and 95")
    return parsed


def make_camera(options: argparse.Namespace) -> SimCamera:
    """The simulator as the stream runs it (tests build the same one to compare frames)."""
    camera = SimCamera(options.width, options.height, ImageMode(options.mode), options.frame_rate, seed=options.seed)
    mpp = options.microns_per_pixel
    camera.set_optics(mpp, mpp, options.width / 2, options.height / 2)
    for axis in ("x", "y", "z", "omega"):
        camera.set_axis_position(axis, getattr(options, axis))
    return camera


def main(args: list[str] | None = None) -> None:
    options = parse_args(args)
    camera = make_camera(options)
    frames = JpegFrames(options.quality)
    camera.add_frame_listener(frames.on_frame)
    try:
        server = ThreadingHTTPServer((HOST, options.port), make_handler(frames))
    except OSError as exc:
        camera.close()
        sys.exit(f"oav-mjpeg-stream: cannot listen on {HOST}:{options.port}: {exc.strerror}")
    server.daemon_threads = True
    port = server.server_address[1]
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    camera.start()
    print(f"oav-mjpeg-stream: serving http://{HOST}:{port}{STREAM_PATH}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        frames.close()
        camera.close()
        server.server_close()


if __name__ == "__main__":
    main()
