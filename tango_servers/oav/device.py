"""The `OAV` Tango device: an on-axis viewer camera with zoom calibration from files.

Thin: frames come from a `CameraBackend` (`backend.make_backend`: `sim` or `mjpeg`), the zoom
and calibration logic from `control.py`; the simulator follows the goniometer axes through
`tango_servers.common.AttributeFollower`, and frame events leave from an `EventPublisher`.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tango
from PIL import Image
from tango import AttrQuality, AttrWriteType, DevState, EventType
from tango.server import Device, attribute, class_property, command, device_property, run

from ophyd_tango.core import lima_video

from ..common import AttributeFollower, EventPublisher, refusals, refuse
from ..common.data_roots import DataRoots, FileExists, OutsideDataRoots, first_free_name, write_new_file
from .backend import CameraBackend, Frame, ImageMode, SampleScene, UnsupportedSetting, make_backend
from .config import (
    ConfigFileError,
    default_display_config_path,
    default_zoom_levels_path,
)
from .control import VIDEO_MODES, VideoView, ZoomControl, stalled, video_mode_named
from .mjpeg import encode_jpeg

MAX_WIDTH, MAX_HEIGHT = 4096, 4096
FRAME_RATE_MAX = 60.0
AXES = ("x", "y", "z", "omega")


class OAV(Device):
    """On-axis viewer camera: live image, zoom levels with microns per pixel and beam centre."""

    bluesky_roles = class_property(
        dtype=(str,),
        default_value=[
            "kind=camera",
            "hinted=image_counter",
            "readback=image",
            "configuration=zoom,microns_per_pixel_x,microns_per_pixel_y,beam_centre_x,beam_centre_y,"
            "exposure,gain,frame_rate",
        ],
    )

    backend = device_property(dtype=str, default_value="sim", doc="camera backend: 'sim' or 'mjpeg'")
    mjpeg_url = device_property(dtype=str, default_value="", doc="MJPEG stream URL for backend 'mjpeg'")
    image_mode = device_property(
        dtype=str, default_value="mono8", doc="the camera's image mode: mono8 or rgb (video_mode converts either)"
    )
    sensor_width = device_property(dtype=int, default_value=1024, doc="simulated sensor width, pixels")
    sensor_height = device_property(dtype=int, default_value=768, doc="simulated sensor height, pixels")
    seed = device_property(dtype=int, default_value=0, doc="seed of the simulator's noise and dust")
    autostart = device_property(dtype=bool, default_value=True, doc="start acquiring when the device starts")
    axis_x = device_property(dtype=str, default_value="sim/aerotech/x", doc="goniometer x (mm), '' for none")
    axis_y = device_property(dtype=str, default_value="sim/aerotech/y", doc="goniometer y (mm), '' for none")
    axis_z = device_property(dtype=str, default_value="sim/aerotech/z", doc="goniometer z (mm), '' for none")
    axis_omega = device_property(dtype=str, default_value="sim/aerotech/omega", doc="omega (deg), '' for none")
    axis_attribute = device_property(dtype=str, default_value="position", doc="attribute followed on each axis")
    zoom_levels_file = device_property(dtype=str, default_value="", doc="zoom levels YAML; '' = packaged")
    display_config_file = device_property(dtype=str, default_value="", doc="beam centres YAML; '' = packaged")
    data_roots = device_property(
        dtype=(str,), default_value=[], doc="directories Snapshot may write under; empty: the stack's data directory"
    )
    snapshot_directory = device_property(
        dtype=str, default_value="", doc="where relative Snapshot paths go ('' = <first data root>/<device name>)"
    )
    jpeg_quality = device_property(dtype=int, default_value=90, doc="quality of image_jpeg and .jpg snapshots")

    # -- lifecycle ---------------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self.set_state(DevState.INIT)
        self._camera: CameraBackend | None = None
        self._camera_error = ""
        self._publisher: EventPublisher[Frame] | None = None
        self._followers: dict[str, AttributeFollower] = {}
        self._read_frame: Frame | None = None
        self._jpeg_cache: tuple[int, bytes] | None = None
        self._video_cache: tuple[tuple, bytes] | None = None
        self._acquire_started = time.time()
        self._zoom: ZoomControl = getattr(self, "_zoom", None) or ZoomControl()  # Init keeps the zoom
        self._video: VideoView = getattr(self, "_video", None) or VideoView()  # and the video settings
        self._video_held: Frame | None = None  # the video image kept while video_active is False
        self._roots: DataRoots | None = None
        self._roots_error = ""
        try:
            self._roots = DataRoots.from_setting(self.data_roots)
        except OutsideDataRoots as exc:
            self._roots_error = str(exc)
            self.error_stream(self._roots_error)
        self._zoom.load(*self._config_paths())
        if self._zoom.error:
            self.error_stream(f"calibration not loaded: {self._zoom.error}")
        for name in (
            "image",
            "image_counter",
            "video_last_image",
            "video_last_image_counter",
            "image_jpeg",
            "acquiring",
            "video_live",
            "video_active",
            "microns_per_pixel_x",
            "microns_per_pixel_y",
            "beam_centre_x",
            "beam_centre_y",
            "frame_rate",
            "exposure",
            "gain",
            "config_error",
        ):
            self.set_change_event(name, True, False)
        try:
            self._camera = self._make_camera()
        except Exception as exc:
            self._camera_error = f"cannot create the '{self.backend}' camera: {exc}"
            self.error_stream(self._camera_error)
            self.set_state(DevState.FAULT)
            return
        # Pushing takes the device monitor: a slow client request (a Snapshot, say) must not hold up
        # the camera thread, so frames go through a publisher that keeps only the newest waiting.
        self._publisher = EventPublisher("oav-events", self.publish, latest_only=True)
        self._camera.add_frame_listener(self._publisher.offer)
        if isinstance(self._camera, SampleScene):
            self._follow_axes(self._camera)
        self._apply_zoom(push=False)
        if getattr(self, "_zoom_labels", None) is not None:
            self._sync_zoom_attribute()  # Init: the files may have new labels
        if self.autostart:
            self._camera.start()
        self.set_state(DevState.ON)

    def initialize_dynamic_attributes(self) -> None:
        self._add_zoom_attribute()

    def delete_device(self) -> None:
        for follower in self._followers.values():
            follower.close()
        self._followers = {}
        if self._publisher is not None:
            # Not joined: it may be waiting for this device's monitor, which we hold now.
            self._publisher.close(discard=True)
        if self._camera is not None:
            self._camera.close()
        self._camera = None
        super().delete_device()

    def _make_camera(self) -> CameraBackend:
        return make_backend(
            self.backend,
            ImageMode.parse(self.image_mode),
            width=self.sensor_width,
            height=self.sensor_height,
            seed=self.seed,
            mjpeg_url=self.mjpeg_url,
        )

    def _follow_axes(self, scene: SampleScene) -> None:
        for axis in AXES:
            device = getattr(self, f"axis_{axis}").strip()
            if device:
                self._followers[axis] = AttributeFollower(device, self.axis_attribute, _axis_setter(scene, axis))

    # -- state and status ------------------------------------------------------------------------
    def dev_state(self) -> DevState:
        camera = self._camera
        if camera is None or self.get_state() == DevState.INIT:
            return DevState.FAULT if self._camera_error else self.get_state()
        if not camera.acquiring:
            return DevState.STANDBY
        return DevState.FAULT if stalled(camera, self._acquire_started, time.time()) else DevState.RUNNING

    def dev_status(self) -> str:
        camera = self._camera
        lines = []
        if camera is None:
            lines.append(self._camera_error or "no camera")
        else:
            lines.append(camera.status())
            if camera.acquiring and stalled(camera, self._acquire_started, time.time()):
                lines.append("No new frame for a while: check the camera or its stream.")
        lines.append(self._zoom.level_line())
        for axis, follower in self._followers.items():
            lines.append(_following_text(axis, follower))
        if self._zoom.error:
            lines.append(self._zoom.error_line())
        if self._roots_error:
            lines.append(f"Snapshots refused: {self._roots_error}.")
        return "\n".join(lines)

    # -- frames ------------------------------------------------------------------------------------
    def read_attr_hardware(self, attr_list) -> None:
        # One frame per client request, so image and image_counter read together always agree.
        self._read_frame = self._camera.last_frame() if self._camera is not None else None

    def _frame(self) -> Frame:
        frame = self._read_frame
        if frame is None:
            refuse(
                "OAV_NoFrame",
                "No frame yet: start the camera with the Start command (or check Status).",
                "OAV.read",
            )
        return frame

    def _cropped(self, frame: Frame) -> np.ndarray:
        return self._zoom.cropped(frame.image)

    def _image_2d(self, frame: Frame) -> np.ndarray:
        image = self._cropped(frame)
        return image.reshape(image.shape[0], -1)  # rgb: (h, w * 3), channels interleaved

    def _video_image(self, frame: Frame | None) -> bytes:
        if frame is None:
            return lima_video.encode(self._video.mode, lima_video.NO_FRAME, None)
        # Events and reads of one frame share one encoding (RGB24 conversion included).
        key = (frame.counter, self._zoom.level, self._video.mode, self._video.bin, self._video.roi)
        cached = self._video_cache
        if cached is None or cached[0] != key:
            cached = (key, self._video.encode(frame, self._cropped(frame)))
            self._video_cache = cached
        return cached[1]

    def _video_frame(self) -> Frame | None:
        return self._read_frame if self._video.active else self._video_held

    def _jpeg(self, frame: Frame) -> bytes:
        cached = self._jpeg_cache
        if cached is None or cached[0] != frame.counter:
            cached = (frame.counter, encode_jpeg(np.ascontiguousarray(self._cropped(frame)), self.jpeg_quality))
            self._jpeg_cache = cached
        return cached[1]

    def publish(self, frame: Frame) -> None:
        """Push the per-frame events (called from the FramePublisher thread)."""
        stamp, valid = frame.timestamp, AttrQuality.ATTR_VALID
        self.push_change_event("image_counter", frame.counter, stamp, valid)
        if self._video.active:
            self.push_change_event("video_last_image_counter", frame.counter, stamp, valid)
        # Images travel only to clients that asked for them.
        if self.is_there_subscriber("image", EventType.CHANGE_EVENT):
            self.push_change_event("image", self._image_2d(frame), stamp, valid)
        if self._video.active and self.is_there_subscriber("video_last_image", EventType.CHANGE_EVENT):
            data = self._video_image(frame)
            self.push_change_event("video_last_image", lima_video.VIDEO_IMAGE_FORMAT, data, stamp, valid)
        if self.is_there_subscriber("image_jpeg", EventType.CHANGE_EVENT):
            self.push_change_event("image_jpeg", "JPEG", self._jpeg(frame), stamp, valid)

    @attribute(
        dtype=((np.uint8,),),
        max_dim_x=MAX_WIDTH * 3,
        max_dim_y=MAX_HEIGHT,
        doc="The latest frame. mono8: (height, width); rgb: (height, width*3), R,G,B interleaved. "
        "Cropped as the zoom level says. Change events only to subscribers.",
    )
    def image(self):
        frame = self._frame()
        return self._image_2d(frame), frame.timestamp, AttrQuality.ATTR_VALID

    @attribute(dtype=np.int64, doc="Number of the latest frame; a change event per frame")
    def image_counter(self):
        return self._counter_reading()

    def _counter_reading(self):
        frame = self._read_frame
        return (frame.counter, frame.timestamp, AttrQuality.ATTR_VALID) if frame else 0

    @attribute(dtype=int, unit="px", doc="Width of `image` in pixels (the latest frame, after crop)")
    def image_width(self) -> int:
        frame = self._read_frame
        return int(self._cropped(frame).shape[1]) if frame else 0

    @attribute(dtype=int, unit="px", doc="Height of `image` in pixels (the latest frame, after crop)")
    def image_height(self) -> int:
        frame = self._read_frame
        return int(self._cropped(frame).shape[0]) if frame else 0

    @attribute(dtype=int, doc="Colour channels per pixel in `image`: 1 (mono8) or 3 (rgb)")
    def image_channels(self) -> int:
        frame = self._read_frame
        mode = frame.mode if frame else self._camera_mode()
        return 3 if mode is ImageMode.RGB else 1

    @attribute(dtype=tango.DevEncoded, doc="The latest frame as JPEG: ('JPEG', bytes)")
    def image_jpeg(self):
        frame = self._frame()
        return "JPEG", self._jpeg(frame), frame.timestamp, AttrQuality.ATTR_VALID

    # LimaCCDs video attributes (Lima-tango-python lima/server/LimaCCDs.py), for MXCuBE-style clients.
    @attribute(dtype=tango.DevEncoded, doc="Lima VIDEO_IMAGE: 32-byte big-endian header + pixels (frame -1: none yet)")
    def video_last_image(self):
        frame = self._video_frame()
        stamp = frame.timestamp if frame else time.time()
        return lima_video.VIDEO_IMAGE_FORMAT, self._video_image(frame), stamp, AttrQuality.ATTR_VALID

    @attribute(dtype=np.int64, doc="Number of images in video_last_image so far (Lima name)")
    def video_last_image_counter(self):
        frame = self._video_frame()
        return (frame.counter, frame.timestamp, AttrQuality.ATTR_VALID) if frame else 0

    @attribute(
        dtype=str, access=AttrWriteType.READ_WRITE, memorized=True, hw_memorized=True,
        doc="Lima video mode of video_last_image: RGB24 (default) or Y8, converted from the camera's image",
    )  # fmt: skip
    def video_mode(self) -> str:
        return self._video.mode.name

    def write_video_mode(self, value: str) -> None:
        with refusals("OAV.write_video_mode", ValueError, reason="OAV_BadVideoMode"):
            self._video.mode = video_mode_named(value)

    @attribute(
        dtype=bool, access=AttrWriteType.READ_WRITE,
        doc="Lima name: True while video_last_image follows the frames; False keeps the last one",
    )  # fmt: skip
    def video_active(self) -> bool:
        return self._video.active

    def write_video_active(self, value: bool) -> None:
        self._set_video_active(bool(value))

    def _set_video_active(self, active: bool) -> None:
        if self._video.active and not active:
            self._video_held = self._camera.last_frame() if self._camera is not None else None
        self._video.active = active
        self.push_change_event("video_active", active)

    @attribute(
        dtype=(np.uint32,), max_dim_x=2, access=AttrWriteType.READ_WRITE,
        doc="Lima video binning: x, y factors (block means) applied to video_last_image",
    )  # fmt: skip
    def video_bin(self):
        return np.array(self._video.bin, dtype=np.uint32)

    def write_video_bin(self, value) -> None:
        with refusals("OAV.write_video_bin", ValueError, reason="OAV_BadVideoBin"):
            self._video.set_bin([int(v) for v in value])

    @attribute(
        dtype=(np.int32,), max_dim_x=4, access=AttrWriteType.READ_WRITE,
        doc="Lima video roi: x, y, width, height in binned pixels of video_last_image; 0, 0, 0, 0 = all",
    )  # fmt: skip
    def video_roi(self):
        return np.array(self._video.roi, dtype=np.int32)

    def write_video_roi(self, value) -> None:
        with refusals("OAV.write_video_roi", ValueError, reason="OAV_BadVideoRoi"):
            self._video.set_roi([int(v) for v in value])

    @attribute(
        dtype=(np.uint32,), max_dim_x=4, label="Image sizes:Signed, Depth, Width, Height",
        doc="Lima image_sizes of `image`: signed (0), bytes per pixel (1 Y8, 3 RGB24), width, height",
    )  # fmt: skip
    def image_sizes(self):
        frame = self._read_frame
        depth = 3 if (frame.mode if frame else self._camera_mode()) is ImageMode.RGB else 1
        height, width = self._cropped(frame).shape[:2] if frame else (0, 0)
        return np.array([0, depth, width, height], dtype=np.uint32)

    @command(dtype_in=str, dtype_out=(str,), doc_in="attribute name", doc_out="the values it accepts")
    def getAttrStringValueList(self, name: str) -> list[str]:
        """LimaCCDs' command: the allowed values of a string setting ([] for other names)."""
        if name.strip().lower() == "video_mode":
            return [mode.name for mode in VIDEO_MODES]
        return []

    # -- acquisition -------------------------------------------------------------------------------
    @attribute(dtype=bool, doc="True while the camera delivers frames (Start / Stop)")
    def acquiring(self) -> bool:
        return self._is_acquiring()

    def _is_acquiring(self) -> bool:
        return bool(self._camera and self._camera.acquiring)

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE, doc="Lima name: write True to Start, False to Stop")
    def video_live(self) -> bool:
        return self._is_acquiring()

    def write_video_live(self, value: bool) -> None:
        if value:
            self._set_video_active(True)  # live video is active video, as in Lima's CtVideo
            self.Start()
        else:
            self.Stop()

    @command
    def Start(self) -> None:
        """Start delivering frames."""
        camera = self._require_camera()
        if not camera.acquiring:
            self._acquire_started = time.time()
        camera.start()
        self._push_acquiring()

    @command
    def Stop(self) -> None:
        """Stop delivering frames; the last frame stays readable."""
        self._require_camera().stop()
        self._push_acquiring()

    def _push_acquiring(self) -> None:
        value = self._is_acquiring()
        self.push_change_event("acquiring", value)
        self.push_change_event("video_live", value)

    @attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, unit="Hz", format="%.1f", min_value=0.1,
        max_value=FRAME_RATE_MAX, memorized=True, hw_memorized=True,
        doc="Frames per second the camera delivers (a ceiling for MJPEG streams)",
    )  # fmt: skip
    def frame_rate(self) -> float:
        return self._require_camera().frame_rate

    def write_frame_rate(self, value: float) -> None:
        self._set(lambda camera: camera.set_frame_rate(value), "frame_rate")

    @attribute(dtype=float, unit="Hz", format="%.1f", doc="Frames per second actually delivered lately")
    def measured_frame_rate(self) -> float:
        return float(getattr(self._require_camera(), "measured_frame_rate", 0.0))

    @attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, unit="s", format="%.4f", min_value=1e-4, max_value=1.0,
        memorized=True, hw_memorized=True, doc="Exposure time (NaN when the camera does not say)",
    )  # fmt: skip
    def exposure(self) -> float:
        return self._require_camera().exposure

    def write_exposure(self, value: float) -> None:
        self._set(lambda camera: camera.set_exposure(value), "exposure")

    @attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, format="%.2f", min_value=0.1, max_value=16.0,
        memorized=True, hw_memorized=True, doc="Linear gain, 1 = unity (NaN when the camera does not say)",
    )  # fmt: skip
    def gain(self) -> float:
        return self._require_camera().gain

    def write_gain(self, value: float) -> None:
        self._set(lambda camera: camera.set_gain(value), "gain")

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="s", format="%.4f", doc="Lima name of exposure")
    def video_exposure(self) -> float:
        return self._require_camera().exposure

    def write_video_exposure(self, value: float) -> None:
        self.write_exposure(value)

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, format="%.2f", doc="Lima name of gain")
    def video_gain(self) -> float:
        return self._require_camera().gain

    def write_video_gain(self, value: float) -> None:
        self.write_gain(value)

    def _set(self, change, name: str) -> None:
        camera = self._require_camera()
        try:
            change(camera)
        except UnsupportedSetting as exc:
            refuse("OAV_Unsupported", f"{exc}.", f"OAV.write_{name}")
        except ValueError as exc:
            refuse("OAV_OutOfRange", f"{exc}.", f"OAV.write_{name}")
        self.push_change_event(name, getattr(camera, name))

    def _require_camera(self) -> CameraBackend:
        if self._camera is None:
            refuse("OAV_NoCamera", f"{self._camera_error or 'No camera'}; fix the properties and run Init.", "OAV")
        return self._camera

    def _camera_mode(self) -> ImageMode:
        return self._camera.mode if self._camera is not None else ImageMode.parse(self.image_mode)

    @command(
        dtype_in=str,
        dtype_out=str,
        doc_in="New .png, .jpg or .jpeg file inside data_roots (relative: in snapshot_directory; '' picks a name)",
        doc_out="Absolute path of the file written",
    )
    def Snapshot(self, path: str) -> str:
        frame = self._require_camera().last_frame()
        if frame is None:
            refuse("OAV_NoFrame", "No frame to save yet: start the camera first.", "OAV.Snapshot")
        try:
            target = self._snapshot_target(path.strip(), frame)
            kind = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(target.suffix.lower())
            if kind is None:
                refuse(
                    "OAV_BadSnapshotPath",
                    f"Snapshot path {target}: use a .png, .jpg or .jpeg file name.",
                    "OAV.Snapshot",
                )
            options = {"quality": self.jpeg_quality} if kind == "JPEG" else {}
            image = Image.fromarray(np.ascontiguousarray(self._cropped(frame)))
            write_new_file(target, lambda file: image.save(file, format=kind, **options))
        except (OutsideDataRoots, FileExists) as exc:
            refuse("OAV_BadSnapshotPath", f"{exc}.", "OAV.Snapshot")
        except OSError as exc:
            refuse(
                "OAV_SnapshotFailed", f"cannot write {path or 'the snapshot'}: {exc.strerror or exc}", "OAV.Snapshot"
            )
        return str(target)

    def _snapshot_target(self, path: str, frame: Frame) -> Path:
        """The checked file a Snapshot writes: inside the data roots, its directory made there."""
        if self._roots is None:
            raise OutsideDataRoots(self._roots_error)
        roots = self._roots
        directory = Path(self.snapshot_directory).expanduser() if self.snapshot_directory else None
        if directory is None:
            directory = roots.roots[0] / self.get_name().replace("/", "_")
        if not path or not Path(path).expanduser().is_absolute():
            directory = roots.check(directory, "device property snapshot_directory")
        if not path:
            directory = roots.make_directory(directory, "device property snapshot_directory")
            return first_free_name(directory, f"oav_snapshot_{frame.counter:06d}", ".png")
        given = Path(path).expanduser()
        target = roots.check(given if given.is_absolute() else directory / given, "Snapshot path")
        roots.make_directory(target.parent, "Snapshot path")
        return target

    # -- zoom and calibration ---------------------------------------------------------------------
    def _config_paths(self) -> tuple[Path, Path]:
        zoom = Path(self.zoom_levels_file).expanduser() if self.zoom_levels_file else default_zoom_levels_path()
        display = (
            Path(self.display_config_file).expanduser() if self.display_config_file else default_display_config_path()
        )
        return zoom, display

    def _add_zoom_attribute(self) -> None:
        zoom = attribute(
            name="zoom",
            dtype=tango.DevEnum,
            enum_labels=list(self._zoom.labels),
            access=AttrWriteType.READ_WRITE,
            memorized=True,
            hw_memorized=True,
            doc="Zoom level of the OAV lens; the labels come from the zoom levels file",
            fget=self.read_zoom,
            fset=self.write_zoom,
        )
        self.add_attribute(zoom)
        self.set_change_event("zoom", True, False)
        # A re-created attribute starts with set point 0, which Init would write back as memorized.
        self.get_device_attr().get_w_attr_by_name("zoom").set_write_value(self._zoom.index)
        self._zoom_labels = self._zoom.labels

    def _sync_zoom_attribute(self) -> None:
        # Enum labels are fixed per attribute: re-create it so clients see the new list.
        if self._zoom.labels != self._zoom_labels:
            self.remove_attribute("zoom", False, False)  # keep the memorized value in the database
            self._add_zoom_attribute()

    def read_zoom(self, attr) -> int:
        return self._zoom.index

    def write_zoom(self, attr) -> None:
        try:
            self._zoom.select(int(attr.get_write_value()))
        except ValueError as exc:
            refuse("OAV_BadZoom", str(exc), "OAV.write_zoom")
        self._apply_zoom(push=True)

    def _apply_zoom(self, push: bool) -> None:
        if isinstance(self._camera, SampleScene):
            self._camera.set_optics(*self._zoom.optics())
        if push:
            level, centre = self._zoom.level, self._zoom.beam_centre
            self.push_change_event("zoom", self._zoom.index)
            self.push_change_event("microns_per_pixel_x", level.microns_per_pixel_x)
            self.push_change_event("microns_per_pixel_y", level.microns_per_pixel_y)
            self.push_change_event("beam_centre_x", centre.x)
            self.push_change_event("beam_centre_y", centre.y)

    @attribute(dtype=float, unit="um", format="%.4f", doc="Size of one image pixel on the sample, horizontally")
    def microns_per_pixel_x(self) -> float:
        return self._zoom.level.microns_per_pixel_x

    @attribute(dtype=float, unit="um", format="%.4f", doc="Size of one image pixel on the sample, vertically")
    def microns_per_pixel_y(self) -> float:
        return self._zoom.level.microns_per_pixel_y

    @attribute(dtype=float, unit="px", format="%.1f", doc="Image column where the X-ray beam is")
    def beam_centre_x(self) -> float:
        return self._zoom.beam_centre.x

    @attribute(dtype=float, unit="px", format="%.1f", doc="Image row where the X-ray beam is")
    def beam_centre_y(self) -> float:
        return self._zoom.beam_centre.y

    @attribute(dtype=str, doc="Why the last ReloadConfig failed ('' when the calibration files are fine)")
    def config_error(self) -> str:
        return self._zoom.error

    @attribute(dtype=str, doc="The calibration files in use")
    def config_files(self) -> str:
        return self._zoom.calibration.describe()

    @command(doc_in="Re-read the zoom levels and display files; on error keep the current calibration")
    def ReloadConfig(self) -> None:
        try:
            self._zoom.reload(*self._config_paths())
        except ConfigFileError as exc:
            self.push_change_event("config_error", self._zoom.error)
            refuse(
                "OAV_BadConfigFile",
                f"{exc}. The device keeps its previous calibration; fix the file and run ReloadConfig again.",
                "OAV.ReloadConfig",
            )
        self.push_change_event("config_error", "")
        self._sync_zoom_attribute()
        self._apply_zoom(push=True)


def _axis_setter(scene: SampleScene, axis: str) -> Callable[[Any], None]:
    """Move `axis` of the simulated scene to each position the followed attribute reports."""
    return lambda value: scene.set_axis_position(axis, float(value))


def _following_text(axis: str, follower: AttributeFollower) -> str:
    if follower.error or follower.value is None:
        return f"Axis {axis}: waiting for {follower.where} ({follower.error or 'no value yet'})."
    return f"Axis {axis}: following {follower.where} = {float(follower.value):g}."


def main(args: list[str] | None = None) -> None:
    run((OAV,), args=args)


if __name__ == "__main__":
    main()
