"""The OAV driven as Lima video clients drive a LimaCCDs device (raw PyTango, MXCuBE's
TangoLimaVideo sequence, BLISS's VIDEO_IMAGE decoder), and Snapshot kept inside its data roots.

One OAV-only stack for the module, with a colour camera; it sets no `data_roots`, so the
device's root is the stack's own data directory (the default under test)."""

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tango
from blissdata.lima.image_utils import decode_devencoded_video
from PIL import Image

from tango_servers.oav.config import default_display_config_path, default_zoom_levels_path
from tango_servers.stack.testing import RunningStack, start_stack
from tango_servers.stack.waiting import wait_until

OAV = "sim/oav/1"


@pytest.fixture(scope="module")
def oav_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    props = {
        "backend": ["sim"],
        "image_mode": ["rgb"],
        "zoom_levels_file": [str(default_zoom_levels_path())],
        "display_config_file": [str(default_display_config_path())],
        **{f"axis_{axis}": [""] for axis in ("x", "y", "z", "omega")},  # no goniometer needed here
    }
    config = {"servers": {"OAV": {"sim": {"OAV": {OAV: {"properties": props}}}}}}
    stack = start_stack(tmp_path_factory.mktemp("oav-lima") / "stack", config=config, redis=False, bridges=False)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def data_root(oav_stack: RunningStack) -> Path:
    """The stack's data directory: the OAV's only data root, as no `data_roots` is set."""
    return (oav_stack.state_dir / "data").resolve()


@pytest.fixture
def oav(oav_stack: RunningStack) -> Iterator[tango.DeviceProxy]:
    oav = oav_stack.proxy(OAV)
    oav.set_timeout_millis(20000)  # Init rebuilds the camera: give a loaded machine time
    wait_until(lambda: oav.image_counter > 0, timeout=30, message=lambda: f"a first frame: {oav.status()}")
    yield oav
    oav.write_attribute("video_bin", [1, 1])
    oav.write_attribute("video_roi", [0, 0, 0, 0])
    oav.write_attribute("video_active", True)
    oav.write_attribute("video_mode", "RGB24")
    oav.write_attribute("video_live", True)


def video_and_image(oav: tango.DeviceProxy):
    """`video_last_image` decoded by BLISS and `image`, both from one request (one frame)."""
    video, image = oav.read_attributes(["video_last_image", "image"])
    decoded = decode_devencoded_video(video.value)
    assert decoded is not None, "no video image yet"
    return decoded, image.value


def test_mxcube_tango_lima_video_sequence_and_bliss_decoder(oav):
    """TangoLimaVideo.init: live off, video_mode = its default RGB24, exposure, live on; then
    poll_image unpacks `>IHHqiiHHHH` and the pixels; get_width/height read image_width/height."""
    assert oav.video_mode == "RGB24"  # the default, the one MXCuBE's TangoLimaVideo asks for
    assert list(oav.getAttrStringValueList("video_mode")) == ["RGB24", "Y8"]
    assert list(oav.getAttrStringValueList("acq_trigger_mode")) == []
    if oav.video_live:
        oav.video_live = False
    oav.video_mode = "RGB24"
    oav.video_exposure = 0.015
    oav.video_live = True
    assert oav.video_live and oav.video_active
    fmt, data = oav.video_last_image
    assert fmt == "VIDEO_IMAGE"
    _, _, mode, frame, width, height, _, size, _, _ = struct.unpack(">IHHqiiHHHH", data[:32])
    assert frame >= 0
    assert (mode, width, height, size) == (6, oav.image_width, oav.image_height, 32)  # RGB24
    assert len(data) == 32 + width * height * 3
    decoded, image = video_and_image(oav)
    assert decoded.array.shape == (768, 1024, 3)
    np.testing.assert_array_equal(decoded.array, image.reshape(768, 1024, 3))
    assert list(oav.image_sizes) == [0, 3, 1024, 768]  # signed, bytes per pixel, width, height


def test_video_mode_strings_are_case_insensitive_and_bad_ones_name_the_choices(oav):
    oav.write_attribute("video_mode", "y8")
    assert oav.video_mode == "Y8"
    decoded, image = video_and_image(oav)
    luma = image.reshape(768, 1024, 3) @ np.array([0.299, 0.587, 0.114])  # BT.601, as documented
    assert decoded.array.dtype == np.uint8 and np.abs(decoded.array - luma).max() <= 0.5 + 1e-9
    assert list(oav.image_sizes) == [0, 3, 1024, 768]  # the camera's image stays RGB
    for bad in ("BAYER_RG8", "rgb"):
        with pytest.raises(
            tango.DevFailed, match=f"video_mode '{bad}' is not one this camera supports; use one of: RGB24, Y8"
        ):
            oav.write_attribute("video_mode", bad)
    assert oav.video_mode == "Y8" and oav.state() == tango.DevState.RUNNING


def binned(image: np.ndarray) -> np.ndarray:
    """An RGB `image` (768, 1024 * 3) in 2 x 2 block means."""
    return image.reshape(384, 2, 512, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def test_video_bin_then_roi_shape_the_video_image(oav):
    oav.write_attribute("video_bin", [2, 2])
    assert list(oav.video_bin) == [2, 2]
    decoded, image = video_and_image(oav)
    np.testing.assert_array_equal(decoded.array, binned(image))
    oav.write_attribute("video_roi", [10, 20, 100, 50])  # in binned pixels
    assert list(oav.video_roi) == [10, 20, 100, 50]
    decoded, image = video_and_image(oav)
    np.testing.assert_array_equal(decoded.array, binned(image)[20:70, 10:110])
    with pytest.raises(tango.DevFailed, match=r"video_bin \[0, 2\] must be two factors, x and y, each 1..16"):
        oav.write_attribute("video_bin", [0, 2])
    with pytest.raises(tango.DevFailed, match=r"video_roi \[0, 0, 10, 0\] must be x, y, width, height"):
        oav.write_attribute("video_roi", [0, 0, 10, 0])
    assert list(oav.video_bin) == [2, 2] and list(oav.video_roi) == [10, 20, 100, 50]
    assert list(oav.image_sizes) == [0, 3, 1024, 768]  # the image, not the video view


def test_inactive_video_keeps_its_last_image_while_frames_go_on(oav):
    oav.write_attribute("video_active", False)
    held = decode_devencoded_video(oav.video_last_image)
    counter = oav.image_counter
    wait_until(lambda: oav.image_counter > counter + 2, message="frames while the video is inactive")
    assert decode_devencoded_video(oav.video_last_image).frame_id == held.frame_id
    oav.write_attribute("video_live", True)  # live video is active video
    assert oav.video_active
    wait_until(
        lambda: decode_devencoded_video(oav.video_last_image).frame_id > held.frame_id, message="the video moving"
    )


def test_before_the_first_frame_video_last_image_is_limas_empty_image(oav_stack, oav):
    db = tango.Database(*oav_stack.tango_host.split(":"))
    db.put_device_property(OAV, {"autostart": ["false"]})
    try:
        oav.Init()  # a new camera, not started: no frame yet
        assert oav.image_counter == 0
        assert decode_devencoded_video(oav.video_last_image) is None  # Lima's frame number -1
        assert struct.unpack("!q", oav.video_last_image[1][8:16]) == (-1,)
    finally:
        db.delete_device_property(OAV, ["autostart"])
        oav.Init()


# -- Snapshot stays inside the data roots (issue 20) --------------------------------------------


def refused(oav: tango.DeviceProxy, path: str) -> str:
    with pytest.raises(tango.DevFailed) as refusal:
        oav.Snapshot(path)
    text = refusal.value.args[0].desc
    assert oav.state() == tango.DevState.RUNNING  # the server keeps running
    return text


def test_default_snapshots_go_to_the_stack_data_directory_not_the_cwd(oav, data_root):
    first, second = oav.Snapshot(""), oav.Snapshot("")
    assert Path(first).parent == data_root / "sim_oav_1" and first != second
    assert Path(oav.Snapshot("relative.png")) == data_root / "sim_oav_1" / "relative.png"
    with Image.open(first) as img:
        assert img.format == "PNG"


def test_every_traversal_is_refused_naming_the_argument_and_the_roots(oav, data_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_root / "escape").symlink_to(outside)
    (data_root / "dangling.png").symlink_to(outside / "created.png")
    roots = f"the data roots {data_root} (device property data_roots)"
    for path in (
        str(outside / "abs.png"),  # absolute, elsewhere
        "../../outside.png",  # relative with ..
        str(data_root / ".." / "up.png"),  # absolute with ..
        str(data_root / "escape" / "via_link.png"),  # a symlink inside the root pointing out
        str(data_root / "escape" / "new_dir" / "x.png"),  # and no directory made out there
        str(data_root / "dangling.png"),  # a dangling symlink to a file outside
    ):
        text = refused(oav, path)
        assert text.startswith("Snapshot path") and roots in text, text
    assert sorted(os.listdir(outside)) == []
    assert not (data_root.parent / "up.png").exists()


def test_an_existing_file_is_never_overwritten(oav, data_root):
    target = data_root / "keep.png"
    target.write_bytes(b"precious")
    text = refused(oav, str(target))
    assert "exists already" in text and "never overwrites" in text
    assert target.read_bytes() == b"precious"
    assert not [p for p in data_root.iterdir() if p.name.endswith(".partial")]


def test_a_snapshot_directory_outside_the_roots_is_refused_by_name(oav_stack, oav, data_root, tmp_path):
    db = tango.Database(*oav_stack.tango_host.split(":"))
    db.put_device_property(OAV, {"snapshot_directory": [str(tmp_path)]})
    try:
        oav.Init()
        wait_until(lambda: oav.image_counter > 0, timeout=30, message="a frame after Init")
        text = refused(oav, "x.png")
        assert text.startswith("device property snapshot_directory") and str(data_root) in text, text
        assert not (tmp_path / "x.png").exists()
    finally:
        db.delete_device_property(OAV, ["snapshot_directory"])
        oav.Init()
