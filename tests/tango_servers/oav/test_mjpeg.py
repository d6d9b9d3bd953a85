"""The MJPEG backend: multipart parsing, and frames from the real `oav-mjpeg-stream` HTTP server."""

import io
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tango_servers.oav.backend import ImageMode
from tango_servers.oav.mjpeg import MjpegCamera, MjpegError, boundary_of, decode_jpeg, encode_jpeg, read_parts
from tango_servers.oav.stream import make_camera, parse_args
from tango_servers.stack.processes import free_port
from tango_servers.stack.waiting import wait_until

STREAM_ARGS = ["--seed", "7", "--quality", "95", "--x", "0.1", "--omega", "30"]


def test_boundary_of_content_types():
    assert boundary_of("multipart/x-mixed-replace; boundary=frame") == b"frame"
    assert boundary_of('multipart/x-mixed-replace;boundary="--my frame"') == b"--my frame"
    with pytest.raises(MjpegError, match="not an MJPEG stream"):
        boundary_of("image/jpeg")
    with pytest.raises(MjpegError, match="without a boundary"):
        boundary_of("multipart/x-mixed-replace")


def test_read_parts_with_and_without_content_length():
    a, b = b"\xff\xd8first\r\n--fake\xff\xd9", b"\xff\xd8second\xff\xd9"
    body = (
        b"preamble\r\n--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Number: 4\r\n\r\n" % len(a)
        + a
        + b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n"
        + b
        + b"\r\n--frame--\r\n"
    )
    parts = list(read_parts(io.BytesIO(body), b"frame"))
    assert [p.body for p in parts] == [a, b]
    assert parts[0].headers["x-frame-number"] == "4"


def test_read_parts_accepts_a_boundary_given_with_dashes():
    body = b"--frame\r\nContent-Length: 3\r\n\r\nabc\r\n--frame\r\nContent-Length: 2\r\n\r\nde\r\n"
    assert [p.body for p in read_parts(io.BytesIO(body), b"--frame")] == [b"abc", b"de"]


def test_jpeg_round_trip_is_close():
    image = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64)
    decoded = decode_jpeg(encode_jpeg(image, 95), ImageMode.MONO8)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 3


@pytest.fixture
def mjpeg_stream():
    """`oav-mjpeg-stream` as a user runs it, on a free loopback port; killed by PID afterwards."""
    port = free_port()
    script = os.path.join(os.path.dirname(sys.executable), "oav-mjpeg-stream")
    proc = subprocess.Popen([script, "--port", str(port), *STREAM_ARGS], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/stream.mjpg" in line, line
        yield f"http://127.0.0.1:{port}/stream.mjpg"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_mjpeg_backend_yields_the_simulator_frames(mjpeg_stream):
    frames = []
    camera = MjpegCamera(mjpeg_stream)
    camera.add_frame_listener(frames.append)
    camera.start()
    try:
        wait_until(lambda: len(frames) >= 10, timeout=30, message=lambda: f"10 frames ({camera.status()})")
    finally:
        camera.close()
    reference = make_camera(parse_args(STREAM_ARGS))  # the stream's simulator, rebuilt here
    try:
        for frame in frames[-3:]:
            assert frame.image.shape == (768, 1024)
            same = np.abs(frame.image.astype(int) - reference.render(frame.counter)).mean()
            other = np.abs(frame.image.astype(int) - reference.render(frame.counter + 1)).mean()
            assert same < 2.0, f"frame {frame.counter} differs from its source by {same:.2f} on average"
            assert same < 0.7 * other  # and it is that frame, not just any frame of the scene
    finally:
        reference.close()
    counters = [f.counter for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)


def test_mjpeg_backend_reconnects_after_the_stream_drops():
    """A server that sends two frames per connection: the backend keeps counting across reconnects."""
    jpeg = encode_jpeg(np.full((48, 64), 128, np.uint8))
    connections = []

    class TwoFrames(BaseHTTPRequestHandler):
        def do_GET(self):
            connections.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=b")
            self.end_headers()
            for _ in range(2):
                self.wfile.write(b"--b\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg + b"\r\n")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TwoFrames)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    frames = []
    camera = MjpegCamera(f"http://127.0.0.1:{server.server_address[1]}/cam", reconnect_delay=0.05)
    camera.add_frame_listener(frames.append)
    camera.start()
    try:
        wait_until(lambda: len(connections) >= 3 and len(frames) >= 5, timeout=20, message="reconnects")
    finally:
        camera.close()
        server.shutdown()
    assert [f.counter for f in frames[:5]] == [1, 2, 3, 4, 5]


def test_unreachable_stream_is_reported_in_status():
    camera = MjpegCamera(f"http://127.0.0.1:{free_port()}/stream.mjpg", reconnect_delay=0.05)
    camera.start()
    try:
        wait_until(lambda: "cannot read MJPEG stream" in camera.status(), timeout=10, message="an error status")
    finally:
        camera.close()
    assert camera.last_frame() is None
