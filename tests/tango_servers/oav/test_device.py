"""The OAV Tango server against real servers: the sample follows the goniometer, zoom comes from
the calibration files, frames and events arrive at the frame rate, Lima video names work."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tango
from PIL import Image

from tango_servers.oav.config import default_display_config_path, default_zoom_levels_path, load_zoom_levels
from tango_servers.oav.sim import SampleGeometry
from tango_servers.oav.stream import make_camera, parse_args
from tango_servers.stack.config import default_config_path
from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import RunningStack, start_stack
from tango_servers.stack.waiting import wait_until

OAV = "sim/oav/1"
AXES = ("x", "y", "z", "omega")


def axes_servers() -> dict:
    """The goniometer: the Aerotech axes exactly as the shipped configuration defines them."""
    return {"Automation1": json.loads(default_config_path().read_text())["servers"]["Automation1"]}


@dataclass
class OavStack:
    stack: RunningStack
    zoom_file: Path
    display_file: Path
    data_root: Path

    @property
    def oav(self) -> tango.DeviceProxy:
        return self.stack.proxy(OAV)

    def axis(self, name: str) -> tango.DeviceProxy:
        return self.stack.proxy(f"sim/aerotech/{name}")


def oav_config(zoom_file: Path, display_file: Path, **properties: str) -> dict:
    props = {"backend": ["sim"], "zoom_levels_file": [str(zoom_file)], "display_config_file": [str(display_file)]}
    props.update({key: [value] for key, value in properties.items()})
    return {"OAV": {"sim": {"OAV": {OAV: {"properties": props}}}}}


@pytest.fixture(scope="module")
def oav_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OavStack]:
    root = tmp_path_factory.mktemp("oav")
    zoom_file = Path(shutil.copy(default_zoom_levels_path(), root / "zoom_levels.yaml"))
    display_file = Path(shutil.copy(default_display_config_path(), root / "display_config.yaml"))
    data_root = root / "data"
    data_root.mkdir()
    config = {"servers": {**axes_servers(), **oav_config(zoom_file, display_file, data_roots=str(data_root))}}
    stack = start_stack(root / "stack", config=config, redis=False, bridges=False)
    try:
        yield OavStack(stack, zoom_file, display_file, data_root)
    finally:
        stack.down()


@pytest.fixture
def oav(oav_stack: OavStack) -> Iterator[tango.DeviceProxy]:
    """The OAV at zoom 1.0x, acquiring at 25 frames/s in mono8, axes at zero; restored afterwards."""
    oav = oav_stack.oav
    for axis in AXES:
        move(oav_stack.axis(axis), 0.0)
    oav.write_attribute("video_mode", "Y8")
    oav.write_attribute("frame_rate", 25.0)
    oav.write_attribute("zoom", 0)
    oav.Start()
    yield oav
    oav.Start()


def move(axis: tango.DeviceProxy, target: float) -> None:
    """Move and wait until the axis has arrived (works for instant and for real moves)."""
    axis.write_attribute("position", target)
    wait_until(
        lambda: abs(axis.read_attribute("position").value - target) < 1e-4 and axis.state() != tango.DevState.MOVING,
        timeout=30,
        message=f"{axis.name()} to reach {target}",
    )


def read_frame(oav: tango.DeviceProxy) -> tuple[np.ndarray, int]:
    """`image` and `image_counter` from one request: the server reads both from the same frame."""
    image, counter = oav.read_attributes(["image", "image_counter"])
    return image.value, counter.value


def wait_for_tip(oav: tango.DeviceProxy, finder, expected: float, tolerance: float = 1.5) -> float:
    seen: list[float] = []

    def tip_is_there() -> bool:
        seen.append(finder.tip_column(read_frame(oav)[0]))
        return abs(seen[-1] - expected) <= tolerance

    wait_until(tip_is_there, timeout=20, message=lambda: f"the pin tip at column {expected:.1f} (seen {seen[-3:]})")
    return seen[-1]


def test_moving_x_moves_the_pin_by_the_expected_pixels(oav_stack, oav, sample_finder):
    x = oav_stack.axis("x")
    for zoom in (0, 1):  # 1.0x and 2.5x
        oav.write_attribute("zoom", zoom)
        move(x, 0.0)
        mpp = oav.read_attribute("microns_per_pixel_x").value
        wait_until(lambda: read_frame(oav)[1] > 0, message="a frame")
        start = read_frame(oav)[1]
        wait_until(lambda s=start: read_frame(oav)[1] > s + 1, message="a frame rendered at the new zoom")
        before = sample_finder.tip_column(read_frame(oav)[0])
        move(x, 0.08)
        wait_for_tip(oav, sample_finder, before + 0.08 * 1000 / mpp)
    move(x, 0.0)


def test_zoom_updates_scale_and_beam_centre_from_the_files_with_events(oav_stack, oav, sample_finder):
    levels = load_zoom_levels(oav_stack.zoom_file)
    assert list(oav.get_attribute_config("zoom").enum_labels) == list(levels.labels)
    events: dict[str, list[float]] = {}

    def record(event: tango.EventData) -> None:
        if not event.err:
            events.setdefault(event.attr_value.name.lower(), []).append(event.attr_value.value)

    names = ["microns_per_pixel_x", "microns_per_pixel_y", "beam_centre_x", "beam_centre_y", "zoom"]
    ids = [oav.subscribe_event(name, tango.EventType.CHANGE_EVENT, record) for name in names]
    try:
        tips = {}
        for index in (0, 2):
            oav.write_attribute("zoom", index)
            level = levels.levels[index]
            assert oav.read_attribute("microns_per_pixel_x").value == pytest.approx(level.microns_per_pixel_x)
            assert oav.read_attribute("microns_per_pixel_y").value == pytest.approx(level.microns_per_pixel_y)
            centre = (oav.read_attribute("beam_centre_x").value, oav.read_attribute("beam_centre_y").value)
            assert centre == {"1.0x": (517, 389), "5.0x": (509, 386)}[level.label]  # display_config.yaml
            wait_until(
                lambda level=level: events.get("microns_per_pixel_x", [None])[-1] == level.microns_per_pixel_x,
                message=f"a microns_per_pixel_x event for {level.label}",
            )
            wait_until(lambda c=centre: events.get("beam_centre_x", [None])[-1] == c[0], message="beam centre event")
            counter = read_frame(oav)[1]
            wait_until(lambda c=counter: read_frame(oav)[1] > c + 1, message="a frame at the new zoom")
            tips[index] = sample_finder.tip_column(read_frame(oav)[0]) - centre[0]
        # The same sample, seen 5x closer: its distance from the beam grows by the scale ratio.
        ratio = levels.levels[0].microns_per_pixel_x / levels.levels[2].microns_per_pixel_x
        assert tips[2] == pytest.approx(tips[0] * ratio, abs=3)
        assert events["zoom"][-1] == 2
    finally:
        for event_id in ids:
            oav.unsubscribe_event(event_id)


def test_broken_calibration_file_is_reported_and_the_old_one_kept(oav_stack, oav):
    good = oav_stack.zoom_file.read_text()
    oav.write_attribute("zoom", 1)
    mpp = oav.read_attribute("microns_per_pixel_x").value
    try:
        oav_stack.zoom_file.write_text(good.replace("[1.148, 1.148]", "[1.148, 1.1.48]"))
        line = 1 + next(i for i, text in enumerate(good.splitlines()) if "1.148" in text)
        with pytest.raises(tango.DevFailed) as info:
            oav.ReloadConfig()
        message = info.value.args[0].desc
        assert str(oav_stack.zoom_file) in message and f"line {line}" in message, message
        status = oav.status()
        assert str(oav_stack.zoom_file) in status and "last good calibration" in status, status
        assert oav.read_attribute("config_error").value.startswith(f"{oav_stack.zoom_file}, line")
        # Still working with the old calibration.
        assert oav.state() == tango.DevState.RUNNING
        assert oav.read_attribute("microns_per_pixel_x").value == mpp
        oav.write_attribute("zoom", 0)
        assert oav.read_attribute("microns_per_pixel_x").value == pytest.approx(2.87)

        # A fixed file with a new scale and a new level is taken as a whole, labels included.
        oav_stack.zoom_file.write_text(
            good.replace("[2.87, 2.87]", "[3.0, 3.1]") + '  - label: "12x"\n    microns_per_pixel: 0.24\n'
        )
        oav_stack.display_file.write_text(oav_stack.display_file.read_text() + '  "12x": [500, 400]\n')
        oav.ReloadConfig()
        assert oav.read_attribute("config_error").value == ""
        assert "Calibration error" not in oav.status()
        assert oav.read_attribute("microns_per_pixel_y").value == pytest.approx(3.1)
        assert list(oav.get_attribute_config("zoom").enum_labels)[-1] == "12x"
        oav.write_attribute("zoom", 5)
        assert oav.read_attribute("beam_centre_x").value == 500
    finally:
        oav_stack.zoom_file.write_text(good)
        oav_stack.display_file.write_text(default_display_config_path().read_text())
        oav.write_attribute("zoom", 0)
        oav.ReloadConfig()
    assert list(oav.get_attribute_config("zoom").enum_labels) == list(load_zoom_levels(oav_stack.zoom_file).labels)


def collect_counter_events(oav: tango.DeviceProxy, count: int) -> list[tuple[int, float]]:
    events: list[tuple[int, float]] = []

    def record(event: tango.EventData) -> None:
        if not event.err:
            events.append((event.attr_value.value, event.attr_value.time.totime()))

    event_id = oav.subscribe_event("image_counter", tango.EventType.CHANGE_EVENT, record)
    try:
        wait_until(lambda: len(events) >= count + 1, timeout=60, message=f"{count} image_counter events")
    finally:
        oav.unsubscribe_event(event_id)
    return events[1 : count + 1]  # the first is the subscription's current value


@pytest.mark.parametrize("rate", [25.0, 10.0])
def test_image_counter_events_arrive_at_the_frame_rate(oav, rate):
    oav.write_attribute("frame_rate", rate)
    events = collect_counter_events(oav, 50)
    counters = [c for c, _ in events]
    # One event per frame: consecutive counters (a loaded client may lose a few, never many).
    assert counters == sorted(counters)
    assert len(counters) >= 0.9 * (counters[-1] - counters[0] + 1)
    # Frames are time-stamped when rendered: the server's rate, whatever the client's speed.
    measured = (counters[-1] - counters[0]) / (events[-1][1] - events[0][1])
    assert 0.5 * rate <= measured <= 1.1 * rate
    assert oav.read_attribute("measured_frame_rate").value == pytest.approx(rate, rel=0.5)


def test_image_is_readable_at_25_frames_per_second(oav):
    seen: dict[int, float] = {}

    def fifty_frames() -> bool:
        image, counter = oav.read_attributes(["image", "image_counter"])
        assert image.value.shape == (768, 1024) and image.value.dtype == np.uint8
        seen.setdefault(counter.value, image.time.totime())
        return len(seen) >= 50

    wait_until(fifty_frames, timeout=60, interval=0.0, message="50 distinct frames read")
    counters = sorted(seen)
    rate = (len(counters) - 1) / (seen[counters[-1]] - seen[counters[0]])
    # Reading as fast as we can: most frames are caught (a generous bound for a loaded machine).
    assert rate >= 0.5 * 25, f"read {rate:.1f} distinct frames/s"


def test_video_last_image_has_the_lima_layout(oav):
    raw, image, counter = oav.read_attributes(["video_last_image", "image", "image_counter"])
    fmt, data = raw.value
    assert fmt == "VIDEO_IMAGE"
    magic, version, mode, frame, width, height, endian, size, _, _ = struct.unpack("!IHHqiiHHHH", data[:32])
    assert (magic, version, mode, endian, size) == (0x5644454F, 1, 0, 0, 32)  # "VDEO", v1, Y8
    assert (frame, width, height) == (counter.value - 1, 1024, 768)  # Lima counts frames from 0
    pixels = np.frombuffer(data[size:], np.uint8).reshape(height, width)
    assert np.array_equal(pixels, image.value)
    assert oav.read_attribute("video_last_image_counter").value >= frame


def test_rgb24_video_of_a_mono_camera_repeats_the_grey(oav):
    oav.write_attribute("video_mode", "RGB24")
    try:
        video, image = oav.read_attributes(["video_last_image", "image"])
        _, data = video.value
        assert struct.unpack("!H", data[6:8])[0] == 6  # Lima RGB24
        rgb = np.frombuffer(data[32:], np.uint8).reshape(768, 1024, 3)
        assert all(np.array_equal(rgb[..., plane], image.value) for plane in range(3))
        assert oav.read_attribute("image").value.shape == (768, 1024)  # the camera stays mono
    finally:
        oav.write_attribute("video_mode", "Y8")


def test_snapshot_writes_png_and_jpeg_files(oav_stack, oav):
    for name, fmt in (("snap.png", "PNG"), ("sub/dir/snap.jpg", "JPEG")):
        written = oav.Snapshot(str(oav_stack.data_root / name))
        assert written == str(oav_stack.data_root.resolve() / name)
        with Image.open(written) as img:
            assert (img.format, img.mode, img.size) == (fmt, "L", (1024, 768))
            pixels = np.asarray(img)
        assert abs(float(pixels.mean()) - float(oav.image.mean())) < 5  # the live picture, not a blank
    with pytest.raises(tango.DevFailed, match=r"use a \.png, \.jpg or \.jpeg file name"):
        oav.Snapshot(str(oav_stack.data_root / "snap.tiff"))


def test_start_stop_and_lima_video_live(oav):
    oav.Stop()
    assert oav.state() == tango.DevState.STANDBY
    assert not oav.acquiring and not oav.video_live
    stopped_at = oav.image_counter
    assert oav.image.shape == (768, 1024)  # the last frame stays readable
    oav.write_attribute("video_live", True)
    assert oav.acquiring
    wait_until(lambda: oav.image_counter > stopped_at, message="frames after video_live = True")
    assert oav.state() == tango.DevState.RUNNING


def test_exposure_and_gain_change_brightness(oav):
    def brightness() -> float:
        start = oav.image_counter
        wait_until(lambda: oav.image_counter > start + 1, message="a new frame")
        return float(oav.image.mean())

    base = brightness()
    try:
        oav.write_attribute("video_exposure", 0.01)
        assert oav.exposure == pytest.approx(0.01)
        assert brightness() == pytest.approx(base / 2, rel=0.1)
        oav.write_attribute("gain", 2.0)
        assert oav.video_gain == pytest.approx(2.0)
        assert brightness() == pytest.approx(base, rel=0.1)
    finally:
        oav.write_attribute("exposure", 0.02)
        oav.write_attribute("gain", 1.0)


def test_declares_its_roles_and_units(oav):
    roles = tango.DeviceProxy(oav.adm_name()).command_inout("QueryWizardClassProperty", "OAV")
    declared = roles[roles.index("bluesky_roles") + 2].split("\n")
    assert "kind=camera" in declared and "hinted=image_counter" in declared
    assert oav.get_attribute_config("microns_per_pixel_x").unit == "um"
    assert float(oav.get_attribute_config("frame_rate").max_value) == 60


def test_image_events_reach_subscribers(oav):
    """Images are pushed only to clients that subscribed, one event per frame, with the frame's time."""
    images: list[tuple[np.ndarray, float]] = []
    videos: list[int] = []

    def on_image(event: tango.EventData) -> None:
        if not event.err:
            images.append((event.attr_value.value, event.attr_value.time.totime()))

    def on_video(event: tango.EventData) -> None:
        if not event.err:
            videos.append(struct.unpack("!q", event.attr_value.value[1][8:16])[0])

    ids = [
        oav.subscribe_event("image", tango.EventType.CHANGE_EVENT, on_image),
        oav.subscribe_event("video_last_image", tango.EventType.CHANGE_EVENT, on_video),
    ]
    try:
        wait_until(lambda: len(images) >= 5 and len(videos) >= 5, timeout=30, message="image events")
    finally:
        for event_id in ids:
            oav.unsubscribe_event(event_id)
    assert all(image.shape == (768, 1024) for image, _ in images)
    assert [t for _, t in images] == sorted(t for _, t in images)
    assert videos[1:] == sorted(set(videos[1:]))


def test_a_zoom_level_with_a_crop_serves_the_cropped_region(oav_stack, oav, sample_finder):
    good_zoom, good_display = oav_stack.zoom_file.read_text(), oav_stack.display_file.read_text()
    try:
        oav_stack.zoom_file.write_text(
            good_zoom + '  - label: "5x crop"\n    microns_per_pixel: 0.574\n    crop: [200, 100, 640, 480]\n'
        )
        oav_stack.display_file.write_text(good_display + '  "5x crop": [300, 250]\n')
        oav.ReloadConfig()
        oav.write_attribute("zoom", 5)
        counter = oav.image_counter
        wait_until(lambda: oav.image_counter > counter + 1, message="a cropped frame")
        image, _ = read_frame(oav)
        assert image.shape == (480, 640)
        assert (oav.image_width, oav.image_height) == (640, 480)
        assert (oav.beam_centre_x, oav.beam_centre_y) == (300, 250)
        # The rotation axis crosses the beam at the beam centre of the cropped image, so the loop
        # tip lies half a loop (plus the sample's x offset) right of it.
        move(oav_stack.axis("x"), 0.0)
        sample = SampleGeometry()
        expected = 300 + (sample.offset_x + sample.loop_length / 2) * 1000 / 0.574
        wait_for_tip(oav, sample_finder, expected, tolerance=2.0)
    finally:
        oav_stack.zoom_file.write_text(good_zoom)
        oav_stack.display_file.write_text(good_display)
        oav.write_attribute("zoom", 0)
        oav.ReloadConfig()


def test_init_rereads_the_files_and_keeps_the_zoom(oav_stack, oav):
    good_zoom, good_display = oav_stack.zoom_file.read_text(), oav_stack.display_file.read_text()
    oav.write_attribute("zoom", 1)
    oav.set_timeout_millis(15000)  # Init rebuilds the camera: give a loaded machine time
    try:
        oav_stack.zoom_file.write_text(good_zoom.replace('"1.0x"', '"1x"'))
        oav_stack.display_file.write_text(good_display.replace('"1.0x"', '"1x"'))
        oav.Init()
        assert oav.read_attribute("zoom").value == 1
        assert oav.get_attribute_config("zoom").enum_labels[0] == "1x"
        start = oav.image_counter
        wait_until(lambda: oav.image_counter > start, message="frames after Init")
        assert oav.state() == tango.DevState.RUNNING
        # A pair of files that disagree: the last good pair stays in use, and Status says why.
        oav_stack.display_file.write_text(good_display)
        oav.Init()
        assert "no beam centre for zoom level(s) '1x'" in oav.read_attribute("config_error").value
        assert oav.get_attribute_config("zoom").enum_labels[0] == "1x"
        assert "last good calibration" in oav.status()
    finally:
        oav_stack.zoom_file.write_text(good_zoom)
        oav_stack.display_file.write_text(good_display)
        oav.Init()
    assert oav.read_attribute("config_error").value == ""
    assert oav.get_attribute_config("zoom").enum_labels[0] == "1.0x"


def test_zoom_and_settings_survive_a_server_restart(oav_stack, oav):
    oav.write_attribute("zoom", 3)
    oav.write_attribute("frame_rate", 20.0)
    stack = oav_stack.stack
    stack.wait_server_back("OAV/sim", stack.kill_server("OAV/sim"))
    oav = oav_stack.oav
    wait_until(lambda: oav.state() == tango.DevState.RUNNING, timeout=30, message="the OAV running again")
    assert oav.read_attribute("zoom").value == 3  # memorized
    assert oav.read_attribute("microns_per_pixel_x").value == pytest.approx(0.383)
    assert oav.read_attribute("frame_rate").value == 20.0


def test_follows_the_axes_again_after_their_server_restarts(oav_stack, oav, sample_finder):
    """Subscriptions are stateless: a crashed and restarted axis server is picked up again."""
    stack = oav_stack.stack
    stack.wait_server_back("Automation1/sim", stack.kill_server("Automation1/sim"))
    x = oav_stack.axis("x")
    move(x, 0.0)
    mpp = oav.read_attribute("microns_per_pixel_x").value
    at_zero = sample_finder.tip_column(read_frame(oav)[0])
    move(x, -0.05)
    seen: list[float] = []

    def followed() -> bool:
        seen.append(sample_finder.tip_column(read_frame(oav)[0]))
        return abs(seen[-1] - (at_zero - 50 / mpp)) <= 1.5

    # Tango notices the lost heartbeat and resubscribes within about 10-20 s.
    wait_until(followed, timeout=60, interval=0.2, message=lambda: f"the pin to follow x again (seen {seen[-3:]})")
    move(x, 0.0)


@pytest.fixture
def mjpeg_stream() -> Iterator[tuple[str, list[str]]]:
    """`oav-mjpeg-stream` on a free loopback port, as a user runs it; killed by PID afterwards."""
    port = free_port()
    args = ["--seed", "11", "--quality", "95", "--x", "-0.05", "--omega", "45"]
    script = os.path.join(os.path.dirname(sys.executable), "oav-mjpeg-stream")
    proc = subprocess.Popen([script, "--port", str(port), *args], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/stream.mjpg"
        assert url in proc.stdout.readline()
        yield url, args
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_mjpeg_backend_serves_the_stream_frames(make_stack, mjpeg_stream, tmp_path):
    url, args = mjpeg_stream
    config = oav_config(
        default_zoom_levels_path(),
        default_display_config_path(),
        backend="mjpeg",
        mjpeg_url=url,
        data_roots=str(tmp_path),
    )
    stack = make_stack({"servers": config}, redis=False, bridges=False)
    oav = stack.proxy(OAV)
    wait_until(lambda: oav.image_counter > 3, timeout=30, message=lambda: f"frames from the stream: {oav.status()}")
    assert oav.state() == tango.DevState.RUNNING
    oav.write_attribute("video_mode", "Y8")
    _, data = oav.read_attribute("video_last_image").value
    frame, width, height = struct.unpack("!qii", data[8:24])
    frame += 1  # Lima's frame numbers count from 0, the stream's from 1
    pixels = np.frombuffer(data[32:], np.uint8).reshape(height, width).astype(int)
    reference = make_camera(parse_args(args))
    try:
        same = np.abs(pixels - reference.render(frame)).mean()
        other = np.abs(pixels - reference.render(frame + 1)).mean()
    finally:
        reference.close()
    assert same < 2.0 and same < 0.7 * other, (same, other)  # that very frame, within JPEG error
    with pytest.raises(tango.DevFailed, match="does not let clients set the exposure"):
        oav.write_attribute("exposure", 0.01)
    assert "Axis" not in oav.status()  # a real camera sees the real sample: no axes followed
    written = oav.Snapshot(str(tmp_path / "from_stream.png"))
    with Image.open(written) as img:
        assert img.size == (1024, 768)


def test_a_dead_stream_is_a_fault_in_state_and_status(make_stack):
    url = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    config = oav_config(default_zoom_levels_path(), default_display_config_path(), backend="mjpeg", mjpeg_url=url)
    oav = make_stack({"servers": config}, redis=False, bridges=False).proxy(OAV)
    wait_until(lambda: oav.state() == tango.DevState.FAULT, timeout=30, message="FAULT")
    assert f"cannot read MJPEG stream {url}" in oav.status()


def test_the_shipped_stack_runs_the_oav_on_the_aerotech_axes(stack, sample_finder):
    """The default configuration as `tango-suite up` runs it: sim/oav/1 follows sim/aerotech/*."""
    oav = stack.proxy(OAV)
    wait_until(lambda: oav.state() == tango.DevState.RUNNING, timeout=30, message="the shipped OAV running")
    wait_until(
        lambda: all(f"following sim/aerotech/{axis}/position" in oav.status() for axis in AXES),
        timeout=30,
        message=lambda: f"the OAV following the axes: {oav.status()}",
    )
    assert tuple(oav.get_attribute_config("zoom").enum_labels) == load_zoom_levels(default_zoom_levels_path()).labels
    assert sample_finder.tip_column(read_frame(oav)[0]) > 0
