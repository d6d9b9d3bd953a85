"""Calibration files: typed objects from standalone loaders, and errors naming file and line."""

from pathlib import Path

import pytest

from tango_servers.oav.config import (
    ConfigFileError,
    Crop,
    default_display_config_path,
    default_zoom_levels_path,
    load_display_config,
    load_zoom_levels,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_packaged_defaults_load_and_agree():
    zoom = load_zoom_levels(default_zoom_levels_path())
    display = load_display_config(default_display_config_path())
    display.check_covers(zoom)
    assert zoom.labels[:2] == ("1.0x", "2.5x")
    assert zoom["2.5x"].microns_per_pixel_x == pytest.approx(1.148)
    assert display.beam_centre("1.0x").x == 517


def test_zoom_levels_with_scalar_scale_and_crop(tmp_path):
    path = write(
        tmp_path,
        "zoom.yaml",
        'zoom_levels:\n  - label: "1x"\n    microns_per_pixel: 2\n'
        '  - label: "5x"\n    microns_per_pixel: [0.4, 0.5]\n    crop: [100, 50, 640, 480]\n',
    )
    zoom = load_zoom_levels(path)
    assert zoom.labels == ("1x", "5x")
    assert (zoom["1x"].microns_per_pixel_x, zoom["1x"].microns_per_pixel_y) == (2.0, 2.0)
    assert zoom["5x"].microns_per_pixel_y == 0.5
    assert zoom["5x"].crop == Crop(100, 50, 640, 480)
    assert zoom.index("5x") == 1


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('zoom_levels:\n  - label: "1x"\n    microns_per_pixel: [2, 2\n', 4, "flow sequence that starts on line 3"),
        ('zoom_levels:\n  - label: "1x"\n    microns_per_pixel: abc\n', 3, "'abc' is not a number"),
        ('zoom_levels:\n  - label: "1x"\n    micron_per_pixel: 2\n', 3, "unknown key 'micron_per_pixel'"),
        ('zoom_levels:\n  - label: "1x"\n    microns_per_pixel: 2\n  - label: "1x"\n    microns_per_pixel: 1\n',
         4, "defined twice"),
        ('zoom_levels:\n  - label: "1x"\n    microns_per_pixel: -2\n', 3, "must be positive"),
        ('zoom_levels:\n  - label: "1x"\n    microns_per_pixel: 2\n    crop: [0, 0, 10]\n', 4, "crop"),
        ('zoom_levels:\n  - microns_per_pixel: 2\n', 2, "missing 'label'"),
        ("zoom_levels: []\n", 1, "non-empty list"),
    ],
)  # fmt: skip
def test_zoom_file_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "zoom.yaml", text)
    with pytest.raises(ConfigFileError) as info:
        load_zoom_levels(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")
    assert words in str(info.value)


def test_display_file_errors_name_file_and_line(tmp_path):
    path = write(tmp_path, "display.yaml", 'beam_centre:\n  "1x": [10, 20]\n  "2x": [10]\n')
    with pytest.raises(ConfigFileError, match=r"display.yaml, line 3: beam centre for '2x' must be 2 numbers"):
        load_display_config(path)


def test_display_must_cover_every_zoom_level(tmp_path):
    zoom = load_zoom_levels(write(tmp_path, "z.yaml", 'zoom_levels:\n  - {label: "1x", microns_per_pixel: 2}\n'
                                  '  - {label: "2x", microns_per_pixel: 1}\n'))  # fmt: skip
    display = load_display_config(write(tmp_path, "d.yaml", 'beam_centre:\n  "1x": [10, 20]\n'))
    with pytest.raises(ConfigFileError, match=r"d.yaml, line 2: no beam centre for zoom level\(s\) '2x'"):
        display.check_covers(zoom)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigFileError, match=r"nowhere\.yaml: cannot read the file"):
        load_zoom_levels(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigFileError, match="empty"):
        load_display_config(write(tmp_path, "d.yaml", "# nothing\n"))
