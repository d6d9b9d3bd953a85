"""Lima's DATA_ARRAY encoding of frames (DevEncoded), for the server and for clients. No Tango here.

The header is the one LimaCCDs packs in `_image_2_data_array` (Lima-tango-python
`lima/server/LimaCCDs.py`), little-endian:

    magic "DTAY" (I), version (H), header length (H), category (I), data type (I),
    endianness (H), number of dims (H), 6 dims (H), 6 strides in bytes (I), then
      v2: 2 x unused (I)        v3: image number (Q)        v4: image number, acq tag (Q), 2 x pad (I)

Dims run fastest first: an image is (width, height), a stack (width, height, frames). Clients
written for Lima decode it with a fixed version (sardana-limaccd's `DataArrayVersion` property),
so the server encodes the version it is configured with (device property `data_array_version`).
"""

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = 0x44544159
PACK = {2: "<IHHIIHHHHHHHHIIIIIIII", 3: "<IHHIIHHHHHHHHIIIIIIQ", 4: "<IHHIIHHHHHHHHIIIIIIQQII"}
VERSIONS = tuple(PACK)
ACQ_TAG_NONE = 0xFFFFFFFF
MAX_DIMS = 6


class Category:
    """DataArrayCategory."""

    SCALAR_STACK, SPECTRUM, IMAGE, SPECTRUM_STACK, IMAGE_STACK = range(5)


DATA_TYPES = ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")
"""DataArrayType, by numpy kind and size."""


@dataclass(frozen=True)
class Header:
    version: int
    category: int
    dtype: np.dtype
    dims: tuple[int, ...]  # fastest first, as in the header
    image_number: int | None  # None in v2
    acq_tag: int | None  # None before v4

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy shape (slowest first): (height, width) or (frames, height, width)."""
        return tuple(reversed(self.dims))


def encode(
    frames: np.ndarray,
    *,
    category: int,
    version: int = 4,
    image_number: int = 0,
    acq_tag: int = ACQ_TAG_NONE,
) -> bytes:
    """Header + the frames' bytes: a 2-D array as an Image, a 3-D one (frames first) as an ImageStack."""
    if version not in PACK:
        raise ValueError(f"DATA_ARRAY version {version} is not one of {', '.join(map(str, VERSIONS))}")
    data = np.ascontiguousarray(frames)
    dims = list(reversed(data.shape))
    if category == Category.IMAGE_STACK and len(dims) == 2:
        dims.append(1)
    code = DATA_TYPES.index(data.dtype.newbyteorder("=").str[1:])
    strides, size = [], data.dtype.itemsize
    for dim in dims:
        strides.append(size)
        size *= dim
    padding = [0] * (MAX_DIMS - len(dims))
    big_endian = int(data.dtype.byteorder == ">")
    head = [MAGIC, version, struct.calcsize(PACK[version]), category, code, big_endian, len(dims)]
    head += dims + padding + strides + padding
    tail = {2: [0, 0], 3: [image_number], 4: [image_number, acq_tag, 0, 0]}[version]
    return struct.pack(PACK[version], *head, *tail) + data.tobytes()


def decode(buffer: bytes) -> tuple[Header, np.ndarray]:
    """The header and the frames of a DATA_ARRAY (any supported version); ValueError when malformed."""
    if len(buffer) < 8:
        raise ValueError(f"a DATA_ARRAY header needs at least 8 bytes, got {len(buffer)}")
    magic, version, length = struct.unpack_from("<IHH", buffer)
    if magic != MAGIC or version not in PACK or length != struct.calcsize(PACK[version]):
        raise ValueError(f"not a DATA_ARRAY header: magic {magic:#x}, version {version}, length {length}")
    fields = struct.unpack_from(PACK[version], buffer)
    category, code, big_endian, ndims = fields[3:7]
    dims = tuple(fields[7 : 7 + ndims])
    dtype = np.dtype(DATA_TYPES[code]).newbyteorder(">" if big_endian else "<")
    count = int(np.prod(dims))
    data = np.frombuffer(buffer, dtype=dtype, count=count, offset=length).reshape(tuple(reversed(dims)))
    number = fields[19] if version >= 3 else None
    tag = fields[20] if version == 4 else None
    return Header(version, category, dtype, dims, number, tag), data
