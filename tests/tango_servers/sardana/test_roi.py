"""The RoI sum the Pilatus pseudo counter computes (no servers needed)."""

import numpy as np
import pytest

pytest.importorskip("sardana")

from tango_servers.sardana.controllers.image_roi_ctrl import check_roi, roi_sum


def test_roi_sum_counts_the_region_and_ignores_module_gaps():
    image = np.arange(20, dtype=np.int32).reshape(4, 5)
    image[:, 2] = -1  # a module gap
    assert roi_sum(image, (0, 0, 0, 0)) == np.clip(image, 0, None).sum()
    assert roi_sum(image, (0, 2, 1, 3)) == 5 + 6 + 10 + 11  # columns 0-1, rows 1-2
    assert roi_sum(image, (1, 4, 0, 1)) == 1 + 3  # the gap pixel counts as 0


def test_bad_regions_are_refused_with_the_rule():
    with pytest.raises(ValueError, match=r"x0 < x1"):
        check_roi([5, 2, 0, 1])
    with pytest.raises(ValueError, match=r"\[x0, x1, y0, y1\]"):
        check_roi([1, 2, 3])
    assert check_roi(np.array([1, 2, 3, 4])) == (1, 2, 3, 4)
