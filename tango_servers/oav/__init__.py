"""On-axis viewer (OAV) camera: backends, simulator, calibration files and the `OAV` Tango device.

The Tango device lives in `tango_servers.oav.device` (imported on its own, so the simulator,
the MJPEG backend and the loaders stay usable without a Tango server).
"""

from .backend import CameraBackend, Frame, ImageMode, SampleScene, UnsupportedSetting
from .config import (
    BeamCentre,
    ConfigFileError,
    Crop,
    DisplayConfig,
    ZoomLevel,
    ZoomLevels,
    load_display_config,
    load_zoom_levels,
)
from .mjpeg import MjpegCamera
from .sim import SimCamera

__all__ = [
    "BeamCentre",
    "CameraBackend",
    "ConfigFileError",
    "Crop",
    "DisplayConfig",
    "Frame",
    "ImageMode",
    "MjpegCamera",
    "SampleScene",
    "SimCamera",
    "UnsupportedSetting",
    "ZoomLevel",
    "ZoomLevels",
    "load_display_config",
    "load_zoom_levels",
]
