"""Lima's software image operations (CtImage with CtSwBinRoiFlip): bin, flip, rotation and roi. No Tango here.

The spec is Lima core `control/src/CtImage.cpp`, `control/software_operation/src/SoftOpInternalMgr.cpp`,
`common/include/lima/SizeUtils.h` (Roi, Bin, Flip) and ProcessLib's `tasks/src/{Binning,Flip,
Rotation,SoftRoi}.cpp`. A frame goes through them in SoftOpInternalMgr's order: bin, flip,
rotation, then roi, so `image_roi` is in the coordinates of the binned, flipped and rotated frame.

* `image_bin` (x, y) bins the output frame's x and y: ProcessLib's Binning runs before the
  rotation with its factors swapped under 90 and 270, and Lima's `getMaxImageSize` is the
  rotated size divided by the bin. Edge pixels that do not fill a bin are dropped (ProcessLib).
  SUM adds the pixels, MEAN divides the sum by the bin's pixel count (integer division); a bin
  holding a module gap pixel is a gap (-1) in both, so gaps stay what the NXmx pixel mask says.
* `image_flip` (x, y): x mirrors the columns, y the rows (ProcessLib's FLIP_X, FLIP_Y).
* `image_rotation` 90 turns the frame clockwise as displayed (row 0 on top): ProcessLib's R_90
  puts source pixel (x, y) at (height - 1 - y, x); 270 is anticlockwise.
* Changing bin, flip or rotation keeps the roi on the same part of the detector, as CtImage does
  (re-binned, un-flipped and re-flipped, un-rotated and re-rotated); a roi that becomes the whole
  frame or empty is reset.
"""

from dataclasses import dataclass, replace

import numpy as np

from .backend import GAP_VALUE, Geometry

ROTATIONS = ("NONE", "90", "180", "270")
BIN_MODES = ("SUM", "MEAN")
INT32_MAX = np.iinfo(np.int32).max

Size = tuple[int, int]  # width, height
Roi = tuple[int, int, int, int]  # x, y, width, height


class BadImageSetting(ValueError):
    """An image_bin, image_roi, image_flip or image_rotation value Lima refuses; the message says why."""


def _swapped(rotation: str, pair: tuple[int, int]) -> tuple[int, int]:
    return (pair[1], pair[0]) if rotation in ("90", "270") else pair


def flipped(roi: Roi, flip: tuple[bool, bool], size: Size) -> Roi:
    """Lima's Roi::getFlipped in an image of `size`."""
    x, y, w, h = roi
    return (size[0] - x - w if flip[0] else x, size[1] - y - h if flip[1] else y, w, h)


def rotated(roi: Roi, rotation: str, size: Size) -> Roi:
    """Lima's Roi::getRotated: `roi` of an image of `size` after the rotation."""
    x, y, w, h = roi
    if rotation == "90":
        return (size[1] - y - h, x, h, w)
    if rotation == "180":
        return (size[0] - x - w, size[1] - y - h, w, h)
    if rotation == "270":
        return (y, size[0] - x - w, h, w)
    return roi


def unrotated(roi: Roi, rotation: str, size: Size) -> Roi:
    """Lima's Roi::getUnrotated: back into the image of `size` before the rotation."""
    inverse = {"90": "270", "270": "90"}.get(rotation, rotation)
    return rotated(roi, inverse, _swapped(rotation, size))


def binned(roi: Roi, factors: tuple[int, int]) -> Roi:
    """Lima's Roi::getBinned (integer division of corner and size)."""
    x, y, w, h = roi
    return (x // factors[0], y // factors[1], w // factors[0], h // factors[1])


def unbinned(roi: Roi, factors: tuple[int, int]) -> Roi:
    x, y, w, h = roi
    return (x * factors[0], y * factors[1], w * factors[0], h * factors[1])


@dataclass(frozen=True)
class ImageOps:
    """Lima's software image settings of one detector; `roi` None is the whole frame."""

    detector: Size
    bin: tuple[int, int] = (1, 1)
    bin_mode: str = "SUM"
    flip: tuple[bool, bool] = (False, False)
    rotation: str = "NONE"
    roi: Roi | None = None

    @property
    def is_identity(self) -> bool:
        return self.bin == (1, 1) and self.flip == (False, False) and self.rotation == "NONE" and self.roi is None

    @property
    def detector_bin(self) -> tuple[int, int]:
        """The bin factors along the detector's x and y (ProcessLib swaps them under 90 and 270)."""
        return _swapped(self.rotation, self.bin)

    @property
    def binned_size(self) -> Size:
        """The binned frame before flip and rotation, in the detector's orientation."""
        bx, by = self.detector_bin
        return (self.detector[0] // bx, self.detector[1] // by)

    @property
    def full_size(self) -> Size:
        """The frame after bin, flip and rotation: the roi's coordinate system."""
        return _swapped(self.rotation, self.binned_size)

    @property
    def size(self) -> Size:
        """Width and height of the frames clients get (image_sizes, readImage, files)."""
        return (self.roi[2], self.roi[3]) if self.roi else self.full_size

    @property
    def full_roi(self) -> Roi:
        return (0, 0, *self.full_size)

    @property
    def shown_roi(self) -> Roi:
        """image_roi as LimaCCDs reads it: the whole frame when no roi is set."""
        return self.roi or self.full_roi

    # -- settings, each keeping the roi on the same detector area (CtImage) -------------------
    def with_bin(self, bin_xy: tuple[int, int]) -> "ImageOps":
        bx, by = (int(v) for v in bin_xy)
        if bx < 1 or by < 1:
            raise BadImageSetting(f"image_bin {[bx, by]}: Invalid binning, both factors must be 1 or more")
        updated = replace(self, bin=(bx, by), roi=None)
        if min(updated.full_size) < 1:
            raise BadImageSetting(
                f"image_bin {[bx, by]} leaves no pixel of the {self.detector[0]} x {self.detector[1]} detector "
                f"(rotation {self.rotation}): use factors up to {list(_swapped(self.rotation, self.detector))}"
            )
        if self.roi is None:
            return updated
        return updated.with_roi(binned(unbinned(self.roi, self.bin), (bx, by)), quiet=True)

    def with_bin_mode(self, mode: str) -> "ImageOps":
        return replace(self, bin_mode=mode)

    def with_flip(self, flip: tuple[bool, bool]) -> "ImageOps":
        flip = (bool(flip[0]), bool(flip[1]))
        return self._reoriented(replace(self, flip=flip, roi=None))

    def with_rotation(self, rotation: str) -> "ImageOps":
        if rotation not in ROTATIONS:
            raise BadImageSetting(f"image_rotation {rotation!r} is not one of {', '.join(ROTATIONS)}")
        return self._reoriented(replace(self, rotation=rotation, roi=None))

    def _reoriented(self, updated: "ImageOps") -> "ImageOps":
        """`updated` (a new flip or rotation) with this roi moved along with the detector area."""
        if self.roi is None:
            return updated
        roi = flipped(unrotated(self.roi, self.rotation, self.binned_size), self.flip, self.binned_size)
        if updated.detector_bin != self.detector_bin:  # an asymmetric bin changes axes with the rotation
            roi = binned(unbinned(roi, self.detector_bin), updated.detector_bin)
        roi = rotated(flipped(roi, updated.flip, updated.binned_size), updated.rotation, updated.binned_size)
        return updated.with_roi(roi, quiet=True)

    def with_roi(self, roi: Roi, *, quiet: bool = False) -> "ImageOps":
        """The roi x, y, width, height in the binned, flipped and rotated frame; empty or whole: reset.

        Out of the frame is refused (Lima's "Software roi out of limits"); `quiet` (a roi moved by
        another setting, always inside) resets it instead of refusing."""
        x, y, w, h = (int(v) for v in roi)
        width, height = self.full_size
        if w <= 0 or h <= 0 or (x, y, w, h) == self.full_roi:
            return replace(self, roi=None)
        if min(x, y) < 0 or x + w > width or y + h > height:
            if quiet:
                return replace(self, roi=None)
            raise BadImageSetting(
                f"image_roi {[x, y, w, h]} is out of the frame: x, y >= 0, x + width <= {width} and "
                f"y + height <= {height} (the frame after image_bin {list(self.bin)}, image_flip and "
                f"image_rotation {self.rotation}); [0, 0, 0, 0] is the whole frame"
            )
        return replace(self, roi=(x, y, w, h))

    # -- frames -------------------------------------------------------------------------------
    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The frame as Lima's SoftOpInternalMgr makes it: bin, flip, rotation, roi (a new array).

        The roi is cut first, from the detector pixels it comes from (bins start at pixel 0, so
        cutting whole bins first gives the same pixels), so a small roi costs little."""
        if self.is_identity:
            return frame
        x, y, w, h = self.detector_region
        data = self._binned(frame[y : y + h, x : x + w])
        if self.flip[0]:
            data = data[:, ::-1]
        if self.flip[1]:
            data = data[::-1, :]
        data = np.rot90(data, k={"NONE": 0, "90": -1, "180": 2, "270": 1}[self.rotation])
        return np.ascontiguousarray(data)

    @property
    def detector_region(self) -> Roi:
        """The detector pixels the output frame comes from: whole bins, before flip and rotation."""
        region = (0, 0, *self.binned_size)
        if self.roi is not None:
            region = flipped(unrotated(self.roi, self.rotation, self.binned_size), self.flip, self.binned_size)
        return unbinned(region, self.detector_bin)

    def _binned(self, frame: np.ndarray) -> np.ndarray:
        """Sum (or mean) of each bin, columns first then rows: a few vectorised passes per factor."""
        bx, by = self.detector_bin
        if (bx, by) == (1, 1):
            return frame
        width, height = self.binned_size
        crop = frame[: height * by, : width * bx]
        # int32 is exact while a bin's sum cannot pass 2**31 - 1; int64 (then saturated) beyond.
        wide = bx * by * max(int(crop.max()), 0) > INT32_MAX
        columns = crop[:, 0::bx].astype(np.int64 if wide else np.int32)
        column_low = crop[:, 0::bx].copy()
        for i in range(1, bx):
            np.add(columns, crop[:, i::bx], out=columns)
            np.minimum(column_low, crop[:, i::bx], out=column_low)
        total, low = columns[0::by].copy(), column_low[0::by].copy()
        for j in range(1, by):
            np.add(total, columns[j::by], out=total)
            np.minimum(low, column_low[j::by], out=low)
        if self.bin_mode == "MEAN":
            np.floor_divide(total, bx * by, out=total)
        out = np.minimum(total, INT32_MAX).astype(frame.dtype) if wide else total
        out[low < 0] = GAP_VALUE
        return out

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A boolean detector mask (True: no sensor) carried through the same operations."""
        as_frame = np.where(mask, GAP_VALUE, 0).astype(np.int32)
        return self.apply(as_frame) < 0


@dataclass(frozen=True)
class ImageGeometry(Geometry):
    """The frames' geometry after the image operations, for the writer (shape, gap mask)."""

    ops: ImageOps | None = None
    source: Geometry | None = None

    @classmethod
    def of(cls, source: Geometry, ops: ImageOps) -> Geometry:
        if ops.is_identity:
            return source
        width, height = ops.size
        return cls(width, height, width, height, 0, 0, source.dtype, ops=ops, source=source)

    def gap_mask(self) -> np.ndarray:
        if self.ops is None or self.source is None:
            return super().gap_mask()
        return self.ops.mask(self.source.gap_mask())
