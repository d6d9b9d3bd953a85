"""OAV calibration files: zoom levels and display (beam centre) configuration.

The dodal pattern: a standalone function takes a path and returns a typed, immutable object,
so the device takes the object and tests need no files. Both files are YAML; every error
names the file and the line (`ConfigFileError`). The defaults ship with this package.
"""

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NoReturn

import yaml

DEFAULT_ZOOM_LEVELS = "zoom_levels.yaml"
DEFAULT_DISPLAY_CONFIG = "display_config.yaml"


class ConfigFileError(ValueError):
    """A calibration file that cannot be used. `str()` reads "<file>, line <n>: <problem>"."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line else str(self.path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Crop:
    """The region of the sensor shown at a zoom level, in sensor pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class ZoomLevel:
    label: str  # as the zoom enum shows it, e.g. "2.5x"
    microns_per_pixel_x: float
    microns_per_pixel_y: float
    crop: Crop | None = None  # None: the full sensor
    line: int = 0  # where it is defined, for messages


@dataclass(frozen=True)
class ZoomLevels:
    """The zoom levels of the OAV lens, in the order the zoom enum lists them."""

    levels: tuple[ZoomLevel, ...]
    source: Path = Path("<memory>")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(level.label for level in self.levels)

    def __getitem__(self, label: str) -> ZoomLevel:
        for level in self.levels:
            if level.label == label:
                return level
        raise KeyError(f"no zoom level {label!r} in {self.source}; known: {', '.join(self.labels)}")

    def index(self, label: str) -> int:
        return self.labels.index(label)


@dataclass(frozen=True)
class BeamCentre:
    """Where the X-ray beam hits the sample on the OAV image, in image pixels."""

    x: float
    y: float


@dataclass(frozen=True)
class DisplayConfig:
    """Beam centre per zoom label."""

    beam_centres: dict[str, BeamCentre] = field(hash=False)
    source: Path = Path("<memory>")
    line: int = 0  # of the beam_centre mapping, for messages about missing levels

    def beam_centre(self, label: str) -> BeamCentre:
        try:
            return self.beam_centres[label]
        except KeyError:
            raise ConfigFileError(self.source, self.line or None, f"no beam centre for zoom level {label!r}") from None

    def check_covers(self, zoom: ZoomLevels) -> None:
        """Raise ConfigFileError unless every zoom level has a beam centre."""
        missing = [label for label in zoom.labels if label not in self.beam_centres]
        if missing:
            raise ConfigFileError(
                self.source,
                self.line or None,
                f"no beam centre for zoom level(s) {', '.join(map(repr, missing))} "
                f"(the zoom levels come from {zoom.source})",
            )


def default_zoom_levels_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(DEFAULT_ZOOM_LEVELS)))


def default_display_config_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(DEFAULT_DISPLAY_CONFIG)))


def load_zoom_levels(path: Path | str) -> ZoomLevels:
    """Read a zoom-levels file:

    ```yaml
    zoom_levels:
      - label: "1.0x"
        microns_per_pixel: [2.87, 2.87]   # x, y; one number for square pixels
        crop: [0, 0, 1024, 768]           # optional: x, y, width, height on the sensor
    ```
    """
    doc = _YamlDoc.load(path)
    top = doc.mapping(doc.root, "the top level", {"zoom_levels"})
    node = doc.require(top, "zoom_levels", doc.root)
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        doc.fail(node, "'zoom_levels' must be a non-empty list of zoom levels")
    levels: list[ZoomLevel] = []
    for item in node.value:
        entry = doc.mapping(item, "a zoom level", {"label", "microns_per_pixel", "crop"})
        label = doc.text(doc.require(entry, "label", item))
        if any(level.label == label for level in levels):
            doc.fail(entry["label"], f"zoom level {label!r} is defined twice")
        mpp = doc.numbers(doc.require(entry, "microns_per_pixel", item), (1, 2), "microns_per_pixel")
        if min(mpp) <= 0:
            doc.fail(entry["microns_per_pixel"], "microns_per_pixel must be positive")
        crop = None
        if "crop" in entry:
            x, y, w, h = doc.numbers(entry["crop"], (4,), "crop [x, y, width, height]")
            if x < 0 or y < 0 or w < 1 or h < 1 or any(v != int(v) for v in (x, y, w, h)):
                doc.fail(entry["crop"], "crop must be whole pixels: x, y >= 0 and width, height >= 1")
            crop = Crop(int(x), int(y), int(w), int(h))
        levels.append(ZoomLevel(label, mpp[0], mpp[-1], crop, line=_line(item)))
    return ZoomLevels(tuple(levels), doc.path)


def load_display_config(path: Path | str) -> DisplayConfig:
    """Read a display file:

    ```yaml
    beam_centre:          # per zoom label: [x, y] in image pixels
      "1.0x": [517, 389]
    ```
    """
    doc = _YamlDoc.load(path)
    top = doc.mapping(doc.root, "the top level", {"beam_centre"})
    node = doc.require(top, "beam_centre", doc.root)
    if not isinstance(node, yaml.MappingNode) or not node.value:
        doc.fail(node, "'beam_centre' must map each zoom label to [x, y] pixels")
    centres: dict[str, BeamCentre] = {}
    for key_node, value_node in node.value:
        label = doc.text(key_node)
        if label in centres:
            doc.fail(key_node, f"beam centre for {label!r} is defined twice")
        x, y = doc.numbers(value_node, (2,), f"beam centre for {label!r}")
        if x < 0 or y < 0:
            doc.fail(value_node, f"beam centre for {label!r} must be inside the image (pixels >= 0)")
        centres[label] = BeamCentre(x, y)
    return DisplayConfig(centres, doc.path, line=_line(node))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


@dataclass
class _YamlDoc:
    """A composed YAML document: nodes keep their line numbers for messages."""

    path: Path
    root: yaml.Node

    @classmethod
    def load(cls, path: Path | str) -> "_YamlDoc":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigFileError(path, None, f"cannot read the file: {exc.strerror}") from exc
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problem = f"malformed YAML: {exc.problem or exc.context}"
            if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
                # YAML notices an unclosed bracket or quote only later: say where it opened.
                problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
            raise ConfigFileError(path, line, problem) from exc
        except yaml.YAMLError as exc:
            raise ConfigFileError(path, None, f"malformed YAML: {exc}") from exc
        if root is None:
            raise ConfigFileError(path, None, "the file is empty")
        return cls(path, root)

    def fail(self, node: yaml.Node, problem: str) -> NoReturn:
        raise ConfigFileError(self.path, _line(node), problem)

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"expected a mapping for {what}")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.text(key_node)
            if key not in allowed:
                self.fail(key_node, f"unknown key {key!r} in {what} (expected: {', '.join(sorted(allowed))})")
            out[key] = value_node
        return out

    def require(self, entries: dict[str, yaml.Node], key: str, parent: yaml.Node) -> yaml.Node:
        if key not in entries:
            self.fail(parent, f"missing {key!r}")
        return entries[key]

    def text(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            self.fail(node, "expected a non-empty text value")
        return str(node.value).strip()

    def numbers(self, node: yaml.Node, counts: tuple[int, ...], what: str) -> list[float]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if len(items) not in counts or not all(isinstance(i, yaml.ScalarNode) for i in items):
            shape = " or ".join(f"{n} number{'s' if n > 1 else ''}" for n in counts)
            self.fail(node, f"{what} must be {shape}")
        values = []
        for item in items:
            try:
                value = float(item.value)
            except ValueError:
                self.fail(item, f"{what}: {item.value!r} is not a number")
            if not math.isfinite(value):
                self.fail(item, f"{what}: {item.value!r} is not a finite number")
            values.append(value)
        return values
