"""Sardana pseudo counter: the sum of counts in a rectangle of an image channel (e.g. the Pilatus).

Each pseudo counter axis has its own region, the `RoI` attribute [x0, x1, y0, y1] in pixels
(columns x0..x1-1, rows y0..y1-1); all zeros means the whole image. Negative pixels (Pilatus
module gaps are -1) count as 0. In a scan the value is a scalar column next to the motor, so
`ascan omega ...` shows the diffraction peak in the recorded data.
"""

import numpy as np
from sardana.pool.controller import (
    DefaultValue,
    Description,
    FGet,
    FSet,
    Memorize,
    Memorized,
    PseudoCounterController,
    Type,
)

FULL_IMAGE = (0, 0, 0, 0)


def roi_sum(image: np.ndarray, roi: tuple[int, int, int, int]) -> float:
    """Sum of the non-negative pixels of `image` inside `roi` = (x0, x1, y0, y1)."""
    image = np.asarray(image)
    if tuple(roi) != FULL_IMAGE:
        x0, x1, y0, y1 = roi
        image = image[y0:y1, x0:x1]
    return float(np.clip(image, 0, None).sum(dtype=np.float64))


def check_roi(value) -> tuple[int, int, int, int]:
    roi = tuple(int(v) for v in value)
    if len(roi) != 4:
        raise ValueError(f"RoI must be [x0, x1, y0, y1], got {list(value)}")
    x0, x1, y0, y1 = roi
    if roi != FULL_IMAGE and not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise ValueError(f"RoI [x0, x1, y0, y1] needs 0 <= x0 < x1 and 0 <= y0 < y1, got {list(roi)}")
    return roi


class ImageRoiSumController(PseudoCounterController):
    """Sum over a region of interest of one image channel (role `image`)."""

    gender = "PseudoCounter"
    model = "Image RoI sum"
    organization = "tango-bluesky-suite"

    counter_roles = ("image",)

    axis_attributes = {
        "RoI": {
            Type: (int,),
            FGet: "get_roi",
            FSet: "set_roi",
            Memorize: Memorized,
            DefaultValue: list(FULL_IMAGE),
            Description: "region [x0, x1, y0, y1] in pixels (columns x0..x1-1, rows y0..y1-1); zeros: all",
        },
    }

    def __init__(self, inst, props, *args, **kwargs):
        PseudoCounterController.__init__(self, inst, props, *args, **kwargs)
        self._rois: dict[int, tuple[int, int, int, int]] = {}

    def get_roi(self, axis):
        return list(self._rois.get(axis, FULL_IMAGE))

    def set_roi(self, axis, value):
        self._rois[axis] = check_roi(value)

    def Calc(self, axis, values):
        (image,) = values
        return roi_sum(image, self._rois.get(axis, FULL_IMAGE))
