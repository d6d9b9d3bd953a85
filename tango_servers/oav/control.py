"""The OAV's logic without Tango: the calibration in force, the zoom level, the Lima video image.

The device maps attributes and commands onto `ZoomControl`; a calibration that fails to load
keeps the last good one in force and says why.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import CameraBackend, Frame, ImageMode
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

# Lima's VIDEO_IMAGE layout: a big-endian header, then the pixels row by row.
VIDEO_IMAGE_FORMAT = "VIDEO_IMAGE"
VIDEO_HEADER = struct.Struct("!IHHqiiHHHH")  # magic, version, mode, frame, width, height, endian, size, pad, pad
VIDEO_MAGIC = 0x5644454F  # "VDEO"
VIDEO_MODES = {ImageMode.MONO8: (0, "Y8"), ImageMode.RGB: (6, "RGB24")}  # Lima VideoMode Y8, RGB24
LIMA_MODE_NAMES = {name: mode for mode, (_, name) in VIDEO_MODES.items()}
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


def video_image(frame: Frame, image: np.ndarray) -> tuple[str, bytes]:
    """Lima VIDEO_IMAGE of `image` (the frame as shown): a 32-byte big-endian header + pixels."""
    image = np.ascontiguousarray(image)
    header = VIDEO_HEADER.pack(
        VIDEO_MAGIC, 1, VIDEO_MODES[frame.mode][0], frame.counter, image.shape[1], image.shape[0], 0,
        VIDEO_HEADER.size, 0, 0,
    )  # fmt: skip
    return VIDEO_IMAGE_FORMAT, header + image.tobytes()


def stalled(camera: CameraBackend, acquiring_since: float, now: float) -> bool:
    """No new frame for `STALL_PERIODS` frame periods (and at least 2 s) while acquiring."""
    frame = camera.last_frame()
    allowed = max(2.0, STALL_PERIODS / max(camera.frame_rate, 0.1))
    since = frame.timestamp if frame is not None else acquiring_since
    return now - since > allowed
