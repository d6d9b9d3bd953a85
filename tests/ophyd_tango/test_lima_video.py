"""The VIDEO_IMAGE codec against ESRF's own Lima client decoder (blissdata's `image_utils`) and
against the header layout MXCuBE's TangoLimaVideo unpacks."""

import struct

import numpy as np
import pytest
from blissdata.lima.image_utils import ImageFormatNotSupported, decode_devencoded_video

from ophyd_tango.core import lima_video
from ophyd_tango.core.lima_video import VideoMode

RNG = np.random.default_rng(7)
MONO = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize(("mode", "pixels"), [(VideoMode.Y8, MONO), (VideoMode.RGB24, RGB)])
def test_blissdata_decodes_what_we_encode(mode, pixels):
    data = lima_video.encode(mode, 41, pixels)
    decoded = decode_devencoded_video((lima_video.VIDEO_IMAGE_FORMAT, data))
    assert decoded.frame_id == 41
    np.testing.assert_array_equal(decoded.array, pixels)
    ours = lima_video.decode(data)
    assert (ours.mode, ours.frame_number, ours.width, ours.height) == (mode, 41, 7, 5)
    np.testing.assert_array_equal(ours.pixels, pixels)


def test_y16_is_little_endian_as_lima_writes_it_on_x86():
    y16 = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    data = lima_video.encode(VideoMode.Y16, 0, y16)
    assert data[32:34] == struct.pack("<H", 0) and data[34:36] == struct.pack("<H", 1000)
    np.testing.assert_array_equal(decode_devencoded_video(data).array, y16)
    np.testing.assert_array_equal(lima_video.decode(data).pixels, y16)


def test_the_header_is_the_one_mxcube_unpacks():
    data = lima_video.encode(VideoMode.RGB24, 3, RGB)
    magic, version, mode, frame, width, height, endian, size, pad0, pad1 = struct.unpack(">IHHqiiHHHH", data[:32])
    assert (magic, version, mode, frame, width, height, endian, size, pad0, pad1) == (
        0x5644454F, 1, 6, 3, 7, 5, 0, 32, 0, 0,
    )  # fmt: skip
    assert data[:4] == b"VDEO" and len(data) == 32 + RGB.size


def test_no_image_yet_is_frame_minus_one():
    data = lima_video.encode(VideoMode.RGB24, lima_video.NO_FRAME, None)
    assert decode_devencoded_video(data) is None  # BLISS's "no image yet"
    decoded = lima_video.decode(data)
    assert decoded.pixels is None and decoded.frame_number == -1
    with pytest.raises(ValueError, match="no image yet"):
        decoded.display()


def test_bgr_is_shown_as_rgb():
    bgr = np.zeros((2, 3, 3), dtype=np.uint8)
    bgr[..., 0] = 200  # blue
    shown = lima_video.decode(lima_video.encode(VideoMode.BGR24, 0, bgr)).display()
    assert shown[0, 0].tolist() == [0, 0, 200]


def test_bad_input_is_named():
    data = lima_video.encode(VideoMode.Y8, 1, MONO)
    with pytest.raises(ValueError, match="magic"):
        lima_video.decode(b"XXXX" + data[4:])
    with pytest.raises(ImageFormatNotSupported):
        decode_devencoded_video(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="truncated"):
        lima_video.decode(data[:-1])
    with pytest.raises(ValueError, match="shorter than its 32-byte header"):
        lima_video.decode(data[:10])
    with pytest.raises(ValueError, match="YUV422 is not one this codec handles"):
        lima_video.decode(data[:6] + struct.pack("!H", 16) + data[8:])
    with pytest.raises(ValueError, match="video mode 99"):
        lima_video.decode(data[:6] + struct.pack("!H", 99) + data[8:])
    with pytest.raises(ValueError, match="RGB24 needs 3 plane"):
        lima_video.encode(VideoMode.RGB24, 0, MONO)
