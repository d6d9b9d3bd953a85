"""OAV camera benchmarks: rendering cost, Tango frame delivery, MJPEG throughput.

    python benchmarks/bench_oav.py [--seconds 5]

Baselines measured in the same run:
- rendering: a naive renderer that draws the background, lighting and noise from scratch
  every frame (what the precomputed background and noise bank avoid);
- Tango delivery: the frame rate asked for (25 frames/s);
- MJPEG: decoding the same JPEG bytes with PIL in a loop, with no HTTP in between.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tango_servers.oav.mjpeg import MjpegCamera, decode_jpeg, encode_jpeg
from tango_servers.oav.sim import SimCamera
from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import start_stack
from tango_servers.stack.waiting import wait_until


def per_call(fn, seconds: float) -> float:
    """Mean seconds per call of `fn` over about `seconds`."""
    fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return (time.perf_counter() - start) / count


def naive_render(camera: SimCamera, rng: np.random.Generator) -> np.ndarray:
    """The baseline: background, vignetting and noise computed per frame in float64."""
    h, w = camera.height, camera.width
    yy, xx = np.mgrid[0:h, 0:w]
    nx, ny = (xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)
    field = 205.0 * (1.0 - 0.22 * (nx * nx + ny * ny)) + 8.0 * nx - 5.0 * ny
    field += rng.normal(0.0, 2.5, size=(h, w))
    scene = np.clip(field, 0, 255).astype(np.uint8)
    camera._draw_sample(scene, camera.scene)
    return scene


def bench_render(seconds: float) -> list[str]:
    rows = []
    rng = np.random.default_rng(0)
    for mode in ("mono8", "rgb"):
        camera = SimCamera(mode=mode)
        try:
            for mpp in (2.87, 0.287):
                camera.set_optics(mpp, mpp, 512, 384)
                ours = per_call(lambda c=camera: c.render(7), seconds / 4)
                naive = per_call(lambda c=camera: naive_render(c, rng), seconds / 4)
                rows.append(
                    f"| render {mode} 1024x768, {mpp} um/px | {ours * 1e3:.2f} ms | {naive * 1e3:.2f} ms "
                    f"| {naive / ours:.1f}x faster |"
                )
        finally:
            camera.close()
    return rows


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_tango(seconds: float) -> list[str]:
    import tango

    root = Path(tempfile.mkdtemp(prefix="bench_oav_"))
    no_axes = {f"axis_{axis}": [""] for axis in ("x", "y", "z", "omega")}
    config = {"servers": {"OAV": {"sim": {"OAV": {"sim/oav/1": {"properties": {"backend": ["sim"], **no_axes}}}}}}}
    stack = start_stack(root / "stack", config=config, redis=False, bridges=False)
    rows = []
    try:
        oav = stack.proxy("sim/oav/1")
        oav.write_attribute("frame_rate", 25.0)
        wait_until(lambda: oav.image_counter > 5, message="frames")
        events: list[tuple[int, float]] = []

        def record(event):
            if not event.err:
                events.append((event.attr_value.value, time.time()))

        pid = stack.server_pid("OAV/sim")
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        event_id = oav.subscribe_event("image_counter", tango.EventType.CHANGE_EVENT, record)
        time.sleep(seconds)  # a measurement window, not synchronisation
        oav.unsubscribe_event(event_id)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
        counters = [c for c, _ in events[1:]]
        rate = (counters[-1] - counters[0]) / (events[-1][1] - events[1][1])
        rows.append(f"| image_counter events (asked 25 frames/s) | {rate:.1f} /s | 25 /s | {rate / 25:.2f} |")
        rows.append(f"| OAV server CPU while delivering 25 frames/s | {cpu * 100:.0f} % of one core | | |")
        for name, video_mode in (
            ("image", ""),
            ("video_last_image", "RGB24"),
            ("video_last_image", "Y8"),
            ("image_jpeg", ""),
        ):
            if video_mode:
                oav.write_attribute("video_mode", video_mode)
            read = per_call(lambda n=name: oav.read_attribute(n), seconds / 3)
            what = f"`{name}` {video_mode}".rstrip()
            rows.append(
                f"| read {what} | {read * 1e3:.2f} ms ({1 / read:.0f} /s) | 40 ms (25 /s) | {0.04 / read:.1f}x |"
            )
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def bench_mjpeg(seconds: float) -> list[str]:
    port = free_port()
    script = os.path.join(os.path.dirname(sys.executable), "oav-mjpeg-stream")
    proc = subprocess.Popen([script, "--port", str(port), "--frame-rate", "60"], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        frames = []
        camera = MjpegCamera(f"http://127.0.0.1:{port}/stream.mjpg", max_frame_rate=60.0)
        camera.add_frame_listener(frames.append)
        camera.start()
        wait_until(lambda: len(frames) > 5, timeout=30, message="frames")
        first, start = len(frames), time.monotonic()
        time.sleep(seconds / 2)  # a measurement window
        rate = (len(frames) - first) / (time.monotonic() - start)
        camera.close()
        jpeg = encode_jpeg(frames[-1].image)
        decode = per_call(lambda: decode_jpeg(jpeg, frames[-1].mode), seconds / 4)
        return [
            f"| MJPEG stream -> MjpegCamera, mono8 1024x768 (served at 60 /s) | {rate:.1f} frames/s "
            f"| {1 / decode:.0f} decodes/s | {rate * decode:.2f} of bare decoding |"
        ]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time per section")
    seconds = parser.parse_args().seconds
    print("| what | ours | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    for section in (bench_render, bench_tango, bench_mjpeg):
        for row in section(seconds):
            print(row, flush=True)


if __name__ == "__main__":
    main()
