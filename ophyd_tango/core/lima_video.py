"""Lima's VIDEO_IMAGE: the DevEncoded value of a LimaCCDs `video_last_image` (no Tango import).

Written once for the OAV server (encode) and the PVA bridge (decode). The spec is upstream:
Lima-tango-python `lima/server/LimaCCDs.py` (`_video_image_2_struct`) for the layout, Lima's
`common/include/lima/Constants.h` (`VideoMode`) for the mode numbers. The header is 32 bytes,
big-endian `!IHHqiiHHHH`: magic "VDEO", header version 1, video mode, frame number (0 for the
first frame, -1 before any), width, height, pixel endianness (0: little-endian), header size, two
pads; the pixels follow, row by row.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

VIDEO_IMAGE_FORMAT = "VIDEO_IMAGE"  # the DevEncoded format string
HEADER = struct.Struct("!IHHqiiHHHH")
MAGIC = 0x5644454F  # b"VDEO"
VERSION = 1
NO_FRAME = -1  # the frame number Lima sends before the first image


class VideoMode(IntEnum):
    """Lima's `VideoMode` numbers, as in the header's mode field and the `video_mode` names."""

    Y8 = 0
    Y16 = 1
    Y32 = 2
    Y64 = 3
    RGB555 = 4
    RGB565 = 5
    RGB24 = 6
    RGB32 = 7
    BGR24 = 8
    BGR32 = 9
    BAYER_RG8 = 10
    BAYER_RG16 = 11
    BAYER_BG8 = 12
    BAYER_BG16 = 13
    I420 = 14
    YUV411 = 15
    YUV422 = 16
    YUV444 = 17
    YUV411PACKED = 18
    YUV422PACKED = 19
    YUV444PACKED = 20


# The modes held as plain numpy pixels: element type and planes per pixel.
_LAYOUTS: dict[VideoMode, tuple[str, int]] = {
    VideoMode.Y8: ("u1", 1),
    VideoMode.Y16: ("u2", 1),
    VideoMode.Y32: ("i4", 1),  # signed, as BLISS's decoder reads Y32 and Y64
    VideoMode.Y64: ("i8", 1),
    VideoMode.RGB24: ("u1", 3),
    VideoMode.RGB32: ("u1", 4),
    VideoMode.BGR24: ("u1", 3),
    VideoMode.BGR32: ("u1", 4),
}
_TO_RGB = {VideoMode.BGR24: [2, 1, 0], VideoMode.BGR32: [2, 1, 0, 3]}


@dataclass(frozen=True)
class VideoImage:
    """One decoded VIDEO_IMAGE; `pixels` is None for Lima's "no image yet" (frame number -1)."""

    mode: VideoMode
    frame_number: int
    width: int
    height: int
    pixels: np.ndarray | None  # (height, width) or (height, width, planes), planes as stored

    def display(self) -> np.ndarray:
        """Mono (height, width) or RGB (height, width, 3) pixels: BGR reordered, alpha dropped."""
        if self.pixels is None:
            raise ValueError("VIDEO_IMAGE holds no image yet (frame number -1)")
        pixels = self.pixels
        if self.mode in _TO_RGB:
            pixels = pixels[..., _TO_RGB[self.mode]]
        return np.ascontiguousarray(pixels[..., :3] if pixels.ndim == 3 else pixels)


def encode(mode: VideoMode, frame_number: int, pixels: np.ndarray | None) -> bytes:
    """The VIDEO_IMAGE bytes of `pixels` in `mode` (None: Lima's empty image, frame number -1)."""
    if pixels is None:
        return HEADER.pack(MAGIC, VERSION, mode, NO_FRAME, 0, 0, 0, HEADER.size, 0, 0)
    element, planes = _layout(mode)
    if pixels.ndim != (2 if planes == 1 else 3) or (planes > 1 and pixels.shape[2] != planes):
        raise ValueError(f"{mode.name} needs {planes} plane(s) per pixel, got an array of shape {pixels.shape}")
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels.astype(np.dtype(element).newbyteorder("<"), copy=False)).tobytes()
    return HEADER.pack(MAGIC, VERSION, mode, frame_number, width, height, 0, HEADER.size, 0, 0) + data


def decode(data: bytes) -> VideoImage:
    """Parse VIDEO_IMAGE bytes; ValueError names what is wrong (magic, version, mode, size)."""
    if len(data) < HEADER.size:
        raise ValueError(f"VIDEO_IMAGE of {len(data)} bytes is shorter than its {HEADER.size}-byte header")
    magic, version, mode_number, frame, width, height, endian, header_size, _, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"VIDEO_IMAGE magic {magic:#x} is not {MAGIC:#x} ('VDEO')")
    if version != VERSION:
        raise ValueError(f"VIDEO_IMAGE header version {version} is not {VERSION}")
    try:
        mode = VideoMode(mode_number)
    except ValueError:
        raise ValueError(f"VIDEO_IMAGE video mode {mode_number} is not one of Lima's") from None
    if frame == NO_FRAME:
        return VideoImage(mode, frame, width, height, None)
    element, planes = _layout(mode)
    dtype = np.dtype(element).newbyteorder(">" if endian else "<")
    count = width * height * planes
    if width < 0 or height < 0 or len(data) < header_size + count * dtype.itemsize:
        raise ValueError(f"VIDEO_IMAGE of {width}x{height} {mode.name} is truncated ({len(data)} bytes)")
    pixels = np.frombuffer(data, dtype=dtype, offset=header_size, count=count)
    shape = (height, width) if planes == 1 else (height, width, planes)
    return VideoImage(mode, frame, width, height, pixels.astype(dtype.newbyteorder("="), copy=False).reshape(shape))


def _layout(mode: VideoMode) -> tuple[str, int]:
    try:
        return _LAYOUTS[mode]
    except KeyError:
        known = ", ".join(m.name for m in _LAYOUTS)
        raise ValueError(f"VIDEO_IMAGE mode {mode.name} is not one this codec handles ({known})") from None
