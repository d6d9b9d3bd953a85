"""Image analysis for the OAV tests: find the sample in a frame the way a centring routine would."""

from types import SimpleNamespace

import numpy as np
import pytest

DARK = 110  # pixel value below which the pin, stem and loop rim count as sample (background ~150-205)


def tip_column(image: np.ndarray, threshold: int = DARK) -> float:
    """Column of the sample's right-most extent (the loop tip), averaged over the 3 furthest rows."""
    dark = _mono(image) < threshold
    rows = np.flatnonzero(dark.any(axis=1))
    assert rows.size, "no dark sample pixels in the image"
    right = np.array([np.flatnonzero(dark[r])[-1] for r in rows], dtype=float)
    return float(np.sort(right)[-3:].mean())


def loop_row(image: np.ndarray, threshold: int = DARK) -> float:
    """Mean row of the dark pixels near the tip (the loop rim): where the loop is vertically."""
    dark = _mono(image) < threshold
    start = int(tip_column(image, threshold)) - 40
    ys, _ = np.nonzero(dark[:, max(start, 0) :])
    return float(ys.mean())


def _mono(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else image.mean(axis=2)


@pytest.fixture
def sample_finder() -> SimpleNamespace:
    return SimpleNamespace(tip_column=tip_column, loop_row=loop_row)
