"""The camera interface an on-axis viewer driver implements (no Tango here).

A backend delivers frames from ONE worker thread to the listeners registered with
`add_frame_listener`; everything else is plain method calls from the Tango device.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np


class ImageMode(StrEnum):
    """Pixel layout of a frame: `mono8` is (height, width) uint8, `rgb` is (height, width, 3) uint8."""

    MONO8 = "mono8"
    RGB = "rgb"

    @classmethod
    def parse(cls, text: str) -> "ImageMode":
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown image mode {text!r}; choose one of: {choices}") from None


@dataclass(frozen=True)
class Frame:
    """One camera frame. `image` is read-only and never modified after delivery."""

    counter: int  # 1 for the first frame after the backend was created, then +1 per frame
    timestamp: float  # seconds since the epoch when the frame was captured
    image: np.ndarray  # uint8, (h, w) for mono8 or (h, w, 3) for rgb

    @property
    def mode(self) -> ImageMode:
        return ImageMode.RGB if self.image.ndim == 3 else ImageMode.MONO8

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


FrameListener = Callable[[Frame], None]


class UnsupportedSetting(Exception):
    """The camera cannot change this setting (e.g. exposure of a plain MJPEG stream)."""


class CameraBackend(Protocol):
    """What the OAV device needs from a camera: live frames plus the usual video settings."""

    @property
    def mode(self) -> ImageMode:
        """The image mode chosen when the camera was made (`make_backend`)."""

    @property
    def acquiring(self) -> bool: ...

    def start(self) -> None:
        """Start delivering frames (idempotent)."""

    def stop(self) -> None:
        """Stop delivering frames (idempotent); the last frame stays available."""

    @property
    def frame_rate(self) -> float:
        """Frames per second: the configured rate, or the measured one for streams."""

    def set_frame_rate(self, hz: float) -> None: ...

    @property
    def exposure(self) -> float:
        """Exposure time in seconds."""

    def set_exposure(self, seconds: float) -> None: ...

    @property
    def gain(self) -> float:
        """Linear gain, 1.0 = unity."""

    def set_gain(self, gain: float) -> None: ...

    def last_frame(self) -> Frame | None:
        """The most recent frame, or None before the first one."""

    def add_frame_listener(self, listener: FrameListener) -> None:
        """Call `listener(frame)` from the backend's worker thread for every new frame."""

    def status(self) -> str:
        """One line for the device Status: what the camera is doing or why it is not."""

    def close(self) -> None:
        """Stop the worker thread and release connections."""


@runtime_checkable
class SampleScene(Protocol):
    """Implemented by simulators that draw the sample: the device feeds them axes and optics."""

    def set_axis_position(self, axis: str, value: float) -> None:
        """`axis` is one of "x", "y", "z" (mm) or "omega" (degrees)."""

    def set_optics(
        self, microns_per_pixel_x: float, microns_per_pixel_y: float, centre_x: float, centre_y: float
    ) -> None:
        """Scale and the sensor pixel where the rotation axis crosses the beam."""


BACKENDS = ("sim", "mjpeg")


def make_backend(kind: str, mode: ImageMode, *, width: int, height: int, seed: int, mjpeg_url: str) -> CameraBackend:
    """The camera named by the device property `backend` (`width`, `height`, `seed`: the
    simulator's; `mjpeg_url`: the stream's). Raises ValueError saying what to set or choose."""
    kind = kind.strip().lower()
    if kind == "sim":
        from .sim import SimCamera  # the implementations import this module's types

        return SimCamera(width, height, mode, seed=seed)
    if kind == "mjpeg":
        if not mjpeg_url:
            raise ValueError("set the device property 'mjpeg_url' to the camera's MJPEG stream URL")
        from .mjpeg import MjpegCamera

        return MjpegCamera(mjpeg_url, mode)
    raise ValueError(f"unknown backend {kind!r}; use {' or '.join(repr(k) for k in BACKENDS)}")
