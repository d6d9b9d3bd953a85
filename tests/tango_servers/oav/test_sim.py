"""The image simulator on its own: geometry, determinism, settings and its worker thread."""

import numpy as np
import pytest

from tango_servers.oav.backend import SampleScene
from tango_servers.oav.sim import SimCamera
from tango_servers.stack.waiting import wait_until


@pytest.fixture
def camera():
    cam = SimCamera(seed=1)
    yield cam
    cam.close()


def test_implements_the_scene_protocol(camera):
    assert isinstance(camera, SampleScene)


def test_render_is_deterministic_per_counter(camera):
    assert np.array_equal(camera.render(5), camera.render(5))
    assert not np.array_equal(camera.render(5), camera.render(6))  # fresh noise per frame


@pytest.mark.parametrize("mpp", [2.87, 1.148, 0.574])
def test_x_moves_the_tip_by_the_scale(camera, sample_finder, mpp):
    camera.set_optics(mpp, mpp, 400, 384)
    before = sample_finder.tip_column(camera.render(1))
    camera.set_axis_position("x", 0.05)
    after = sample_finder.tip_column(camera.render(2))
    assert after - before == pytest.approx(0.05 * 1000 / mpp, abs=1.5)


def test_y_and_z_move_the_loop_vertically_as_omega_turns(camera, sample_finder):
    mpp = 2.87
    camera.set_optics(mpp, mpp, 512, 384)
    base = sample_finder.loop_row(camera.render(1))
    camera.set_axis_position("y", 0.1)
    assert sample_finder.loop_row(camera.render(2)) - base == pytest.approx(100 / mpp, abs=2)
    camera.set_axis_position("y", 0.0)
    camera.set_axis_position("omega", 90.0)
    at_90 = sample_finder.loop_row(camera.render(3))
    camera.set_axis_position("z", -0.1)  # at omega 90, -z moves the sample down the screen
    assert sample_finder.loop_row(camera.render(4)) - at_90 == pytest.approx(100 / mpp, abs=2)


def test_omega_swings_the_off_centre_loop(camera, sample_finder):
    g = camera.geometry
    rows = []
    for omega in (0.0, 180.0):
        camera.set_axis_position("omega", omega)
        rows.append(sample_finder.loop_row(camera.render(1)))
    # The loop sits offset_y off the axis at omega 0 and -offset_y at 180.
    assert rows[1] - rows[0] == pytest.approx(-2 * g.offset_y * 1000 / 2.87, abs=3)


def test_rgb_mode_gives_three_channels():
    cam = SimCamera(width=320, height=240, mode="rgb")
    try:
        image = cam.render(1)
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert image[..., 0].mean() > image[..., 2].mean()  # warm backlight
    finally:
        cam.close()


def test_exposure_and_gain_scale_brightness(camera):
    base = camera.render(1).mean()
    camera.set_exposure(camera.exposure / 2)
    assert camera.render(1).mean() == pytest.approx(base / 2, rel=0.05)
    camera.set_gain(2.0)
    assert camera.render(1).mean() == pytest.approx(base, rel=0.05)


@pytest.mark.parametrize(
    ("setter", "value"), [("set_frame_rate", 0.0), ("set_frame_rate", 1000.0), ("set_exposure", 5.0)]
)
def test_settings_out_of_range_are_refused(camera, setter, value):
    with pytest.raises(ValueError, match="outside"):
        getattr(camera, setter)(value)


def test_worker_delivers_frames_at_the_frame_rate(camera):
    frames = []
    camera.add_frame_listener(frames.append)
    camera.set_frame_rate(20.0)
    camera.start()
    wait_until(lambda: len(frames) >= 30, timeout=20, message="30 frames")
    camera.stop()
    counters = [f.counter for f in frames]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    span = frames[-1].timestamp - frames[0].timestamp
    rate = (len(frames) - 1) / span
    assert 0.4 * 20 <= rate <= 20 * 1.1  # never faster than asked; slower only on a loaded machine
    assert camera.last_frame() is frames[-1] or camera.last_frame().counter >= frames[-1].counter
    assert not frames[-1].image.flags.writeable
