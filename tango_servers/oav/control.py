"""The OAV's logic without Tango: the calibration in force, the zoom level, the Lima video image.

The device maps attributes and commands onto `ZoomControl` and `VideoView`; a calibration that
fails to load keeps the last good one in force and says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ophyd_tango.core import lima_video
from ophyd_tango.core.lima_video import VideoMode

from .backend import CameraBackend, Frame
from .config import (
    BeamCentre,
    ConfigFileError,
    Crop,
    DisplayConfig,
    ZoomLevel,
    ZoomLevels,
    default_display_config_path,
    default_zoom_levels_path,
    load_display_config,
    load_zoom_levels,
)

# The video modes served, converted from either image mode; RGB24 first: the default, the one
# MXCuBE's TangoLimaVideo asks for.
VIDEO_MODES = (VideoMode.RGB24, VideoMode.Y8)
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B for Y8 from colour
MAX_VIDEO_BIN = 16
STALL_PERIODS = 5  # frames missed (and at least 2 s) before an acquiring camera counts as stalled


@dataclass(frozen=True)
class Calibration:
    """A consistent pair of calibration files, as loaded."""

    zoom_levels: ZoomLevels
    display: DisplayConfig
    loaded_at: float

    @classmethod
    def load(cls, zoom_path: Path, display_path: Path) -> Calibration:
        zoom_levels = load_zoom_levels(zoom_path)
        display = load_display_config(display_path)
        display.check_covers(zoom_levels)
        return cls(zoom_levels, display, time.time())

    def describe(self) -> str:
        return f"{self.zoom_levels.source} and {self.display.source}"


class ZoomControl:
    """The calibration in force and the zoom level chosen (kept across the device's Init)."""

    def __init__(self) -> None:
        self._calibration: Calibration | None = None
        self.index = 0
        self.error = ""  # why the last load failed; '' when the files in force are the ones asked for

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            raise RuntimeError("no calibration loaded yet: call ZoomControl.load first")
        return self._calibration

    def load(self, zoom_path: Path, display_path: Path) -> None:
        """Load the files (at Init). On error keep the last good calibration, or with none yet the
        packaged one, and keep the reason in `error`."""
        self.error = ""
        try:
            self._calibration = Calibration.load(zoom_path, display_path)
        except ConfigFileError as exc:
            self.error = str(exc)
            if self._calibration is None:
                self._calibration = Calibration.load(default_zoom_levels_path(), default_display_config_path())
        self.index = min(self.index, len(self.calibration.zoom_levels.levels) - 1)

    def reload(self, zoom_path: Path, display_path: Path) -> None:
        """Load the files again, keeping the zoom label when it still exists; on ConfigFileError
        (raised again) the calibration in force stays and `error` says why."""
        try:
            calibration = Calibration.load(zoom_path, display_path)
        except ConfigFileError as exc:
            self.error = str(exc)
            raise
        label = self.level.label
        self._calibration, self.error = calibration, ""
        labels = calibration.zoom_levels.labels
        self.index = labels.index(label) if label in labels else 0

    def select(self, index: int) -> None:
        """Choose the zoom level by its index; ValueError when there is none."""
        last = len(self.calibration.zoom_levels.levels) - 1
        if not 0 <= index <= last:
            raise ValueError(f"zoom index {index} is not one of 0..{last}")
        self.index = index

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.calibration.zoom_levels.labels)

    @property
    def level(self) -> ZoomLevel:
        return self.calibration.zoom_levels.levels[self.index]

    @property
    def beam_centre(self) -> BeamCentre:
        return self.calibration.display.beam_centre(self.level.label)

    def optics(self) -> tuple[float, float, float, float]:
        """Microns per pixel x, y and the sensor pixel of the beam (x, y), crop included."""
        level, centre = self.level, self.beam_centre
        crop = level.crop or Crop(0, 0, 0, 0)
        return level.microns_per_pixel_x, level.microns_per_pixel_y, crop.x + centre.x, crop.y + centre.y

    def cropped(self, image: np.ndarray) -> np.ndarray:
        """`image` cut to the crop of the zoom level (a view, not a copy)."""
        crop = self.level.crop
        if crop is None:
            return image
        return image[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]

    def level_line(self) -> str:
        """The level in force, for the device Status."""
        level, centre = self.level, self.beam_centre
        return (
            f"Zoom {level.label}: {level.microns_per_pixel_x:g} x {level.microns_per_pixel_y:g} um/pixel, "
            f"beam centre ({centre.x:g}, {centre.y:g}) pixels."
        )

    def error_line(self) -> str:
        """Why the files asked for are not in force ('' when they are), for the device Status."""
        if not self.error:
            return ""
        when = time.strftime("%H:%M:%S", time.localtime(self.calibration.loaded_at))
        return (
            f"Calibration error: {self.error}. Still using the last good calibration "
            f"({self.calibration.describe()}, loaded at {when})."
        )


def video_mode_named(name: str) -> VideoMode:
    """The Lima video mode named `name` (any case); ValueError lists the names allowed."""
    mode = VideoMode.__members__.get(name.strip().upper())
    if mode not in VIDEO_MODES:
        allowed = ", ".join(m.name for m in VIDEO_MODES)
        raise ValueError(f"video_mode {name!r} is not one this camera supports; use one of: {allowed}")
    return mode


@dataclass
class VideoView:
    """Lima's video settings over the image shown: `active`, then `bin`, then `roi` in binned
    pixels (x, y, width, height; a zero size is the whole image, a roi past the edge is clipped),
    then `mode`: the pixels converted to RGB24 (grey repeated) or Y8 (BT.601 luma), as Lima's
    video converts the camera's image to the video mode asked for."""

    active: bool = True
    mode: VideoMode = VideoMode.RGB24
    bin: tuple[int, int] = (1, 1)
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)

    def set_bin(self, values: list[int]) -> None:
        if len(values) != 2 or not all(1 <= v <= MAX_VIDEO_BIN for v in values):
            raise ValueError(f"video_bin {list(values)} must be two factors, x and y, each 1..{MAX_VIDEO_BIN}")
        self.bin = (int(values[0]), int(values[1]))

    def set_roi(self, values: list[int]) -> None:
        if len(values) != 4 or min(values) < 0 or (values[2] == 0) != (values[3] == 0):
            raise ValueError(
                f"video_roi {list(values)} must be x, y, width, height, none negative "
                "(width and height both 0 for the whole image)"
            )
        self.roi = (int(values[0]), int(values[1]), int(values[2]), int(values[3]))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """`image` (h, w) or (h, w, 3) uint8 binned by block means, cut to the roi, converted to `mode`."""
        bx, by = self.bin
        if (bx, by) != (1, 1):
            rows, cols = image.shape[0] // by, image.shape[1] // bx
            blocks = image[: rows * by, : cols * bx].reshape(rows, by, cols, bx, *image.shape[2:])
            image = blocks.mean(axis=(1, 3)).round().astype(np.uint8)
        x, y, width, height = self.roi
        if width and height:
            cut = image[y : y + height, x : x + width]
            image = cut if cut.size else image
        if self.mode is VideoMode.Y8 and image.ndim == 3:
            return (image @ LUMA).round().astype(np.uint8)
        if self.mode is VideoMode.RGB24 and image.ndim == 2:
            return np.stack([image] * 3, axis=-1)
        return image

    def encode(self, frame: Frame, image: np.ndarray) -> bytes:
        """The VIDEO_IMAGE bytes of `image` (the frame as shown), with Lima's 0-based frame number."""
        return lima_video.encode(self.mode, frame.counter - 1, self.apply(image))


def stalled(camera: CameraBackend, acquiring_since: float, now: float) -> bool:
    """No new frame for `STALL_PERIODS` frame periods (and at least 2 s) while acquiring."""
    frame = camera.last_frame()
    allowed = max(2.0, STALL_PERIODS / max(camera.frame_rate, 0.1))
    since = frame.timestamp if frame is not None else acquiring_since
    return now - since > allowed
