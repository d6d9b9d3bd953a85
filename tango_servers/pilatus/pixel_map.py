"""Where the pixels of a saved frame lie on the detector, after Lima's image operations. No Tango here.

Coordinates are continuous pixel coordinates (x along a row, y down the rows; pixel (i, j) spans
i .. i + 1 and j .. j + 1), as NXmx's beam_center_x/_y and CBF's Beam_xy count them. A frame
goes through bin, flip, rotation and roi in that order (`image.py`), so a detector point maps
to the saved frame by the same steps, and back by their inverses.
"""

from dataclasses import dataclass

from .image import ImageOps

Point = tuple[float, float]


def saved_point(ops: ImageOps, point: Point) -> Point:
    """The detector point `point` in the saved frame's pixel coordinates."""
    bx, by = ops.detector_bin
    width, height = ops.binned_size
    x, y = point[0] / bx, point[1] / by
    x, y = (width - x if ops.flip[0] else x), (height - y if ops.flip[1] else y)
    x, y = {"NONE": (x, y), "90": (height - y, x), "180": (width - x, height - y), "270": (y, width - x)}[ops.rotation]
    rx, ry = ops.roi[:2] if ops.roi else (0, 0)
    return (x - rx, y - ry)


def detector_point(ops: ImageOps, point: Point) -> Point:
    """The saved frame's point `point` in the detector's pixel coordinates (`saved_point` inverted)."""
    bx, by = ops.detector_bin
    width, height = ops.binned_size
    rx, ry = ops.roi[:2] if ops.roi else (0, 0)
    x, y = point[0] + rx, point[1] + ry
    x, y = {"NONE": (x, y), "90": (y, height - x), "180": (width - x, height - y), "270": (width - y, x)}[ops.rotation]
    x, y = (width - x if ops.flip[0] else x), (height - y if ops.flip[1] else y)
    return (x * bx, y * by)


@dataclass(frozen=True)
class SavedAxes:
    """The saved frame on the detector: its corner and one step along its fast and slow pixels,
    in detector pixels."""

    origin: Point
    fast: Point
    slow: Point


def saved_axes(ops: ImageOps) -> SavedAxes:
    """Where the saved frame's pixel corner (0, 0) lies and which way its rows and columns run."""
    origin = detector_point(ops, (0, 0))
    fast, slow = detector_point(ops, (1, 0)), detector_point(ops, (0, 1))
    return SavedAxes(
        origin,
        (fast[0] - origin[0], fast[1] - origin[1]),
        (slow[0] - origin[0], slow[1] - origin[1]),
    )
