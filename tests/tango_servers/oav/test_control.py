"""The OAV control layer without a server: zoom selection, reloads that keep the last good calibration."""

from pathlib import Path

import numpy as np
import pytest

from tango_servers.oav.config import ConfigFileError, default_display_config_path, default_zoom_levels_path
from tango_servers.oav.control import ZoomControl


def test_a_bad_file_at_load_falls_back_to_the_packaged_calibration(tmp_path: Path):
    bad = tmp_path / "zoom.yaml"
    bad.write_text("zoom_levels: nonsense\n")
    zoom = ZoomControl()
    zoom.load(bad, default_display_config_path())
    assert str(bad) in zoom.error
    assert zoom.calibration.zoom_levels.source == default_zoom_levels_path()
    assert zoom.error_line().startswith(f"Calibration error: {zoom.error}. Still using")


def test_reload_keeps_the_label_and_a_failed_reload_keeps_the_calibration(tmp_path: Path):
    zoom = ZoomControl()
    zoom.load(default_zoom_levels_path(), default_display_config_path())
    assert zoom.error == "" and zoom.error_line() == ""
    zoom.select(1)
    label = zoom.level.label
    reordered = tmp_path / "zoom.yaml"
    reordered.write_text(
        f'zoom_levels:\n  - label: "extra"\n    microns_per_pixel: 9\n'
        f'  - label: "{label}"\n    microns_per_pixel: 0.5\n    crop: [10, 20, 30, 40]\n'
    )
    display = tmp_path / "display.yaml"
    display.write_text(f'beam_centre:\n  "extra": [1, 2]\n  "{label}": [5, 6]\n')
    zoom.reload(reordered, display)
    assert (zoom.index, zoom.level.label, zoom.beam_centre.x) == (1, label, 5)
    assert zoom.optics() == (0.5, 0.5, 15, 26)  # beam centre in sensor pixels: crop origin + centre
    assert zoom.cropped(np.zeros((100, 100))).shape == (40, 30)
    in_force = zoom.calibration
    reordered.write_text("zoom_levels: []\n")
    with pytest.raises(ConfigFileError):
        zoom.reload(reordered, display)
    assert zoom.calibration is in_force and str(reordered) in zoom.error
    with pytest.raises(ValueError, match=r"zoom index 5 is not one of 0\.\.1"):
        zoom.select(5)
