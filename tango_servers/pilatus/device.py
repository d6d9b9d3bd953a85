"""The Pilatus's LimaCCDs Tango device over `control.AcquisitionControl`.

Default device `sim/pilatus/1`, Tango class `LimaCCDs` with the names, Tango types and string
value sets of Lima-tango-python's `lima/server/LimaCCDs.py`. A LimaCCDs client drives it as usual::

    acq_trigger_mode = "INTERNAL_TRIGGER"; acq_nb_frames = 10; acq_expo_time = 0.1
    prepareAcq(); startAcq()            # acq_status "Running" ... "Ready" once every frame is on disk
    readImageSeq([0, 10])               # ("DATA_ARRAY", header + 10 frames)

Step scans: INTERNAL_TRIGGER_MULTI, prepareAcq, startAcq, then `softTrigger` once per point
(one frame each; `last_image_saved` tells when it is on disk). Fly scans: EXTERNAL_GATE (or
EXTERNAL_TRIGGER / EXTERNAL_TRIGGER_MULTI), acq_nb_frames = N, prepareAcq, startAcq, then arm
the PSO: every pulse on `trigger_source` makes one frame, and the acquisition ends after N.

`file_event` (JSON, change events) announces each file at open (done=false) and at close
(done=true, success=true|false) with `file_path`, `file_type` "h5" and `hinted_location`.
Files are written only inside the device property `data_roots`.
"""

import contextlib
import functools
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import tango
from tango import AttrWriteType, CmdArgType, DevState
from tango.server import Device, attribute, class_property, command, device_property, run

from ..common import AttributeFollower, EventPublisher, publish_roles, refusals, refuse
from ..common.data_roots import DataRoots, OutsideDataRoots, stack_data_directory
from . import data_array
from .backend import VALID_RANGES, Frame, Geometry, SampleInput, make_backend
from .camera import Pilatus, share_control
from .control import AcqStatus, AcquisitionControl, ControlRefused, PulseCounter, SavingSettings
from .nexus import PIXEL_SIZE_M
from .paths import MAX_FILE_NUMBER
from .values import LIMA_VALUES, BadValue, lima_choice
from .writer import SavingFormat

ABORT_WAIT_S = 2.0

BLUESKY_ROLES = [
    "kind=detector",
    "trigger=startAcq",
    "prepare=prepareAcq",
    "stop=stopAcq",
    "abort=abortAcq",
    "busy_state=RUNNING",
    "acq_status=acq_status",
    "ready_value=Ready",
    "fault_value=Fault",
    "nb_frames=acq_nb_frames",
    "exposure=acq_expo_time",
    "trigger_mode=acq_trigger_mode",
    "step_trigger_mode=INTERNAL_TRIGGER_MULTI",
    "fly_trigger_mode=EXTERNAL_GATE",
    "frame_counter=last_image_saved",
    "file_event=file_event",
    "saving=saving_directory,saving_prefix,saving_suffix,saving_next_number,saving_format,saving_mode",
    "image=image_preview",
    "hinted=roi_sum",
    "configuration=acq_expo_time,latency_time,acq_nb_frames,acq_trigger_mode,saving_format",
]

_STATE = {
    AcqStatus.Ready: DevState.ON,
    AcqStatus.Running: DevState.RUNNING,
    AcqStatus.Fault: DevState.FAULT,
    AcqStatus.Configuration: DevState.RUNNING,
}

EVENT_ATTRIBUTES = (
    "acq_status",
    "acq_status_fault_error",
    "last_image_acquired",
    "last_image_ready",
    "last_image_saved",
    "ready_for_next_image",
    "file_event",
    "saving_next_number",
)

CAMERA_TYPE = "Pilatus"
NOT_APPLICABLE = -1  # what LimaCCDs reads for an acc_* figure that does not apply (CtAcquisition, no plugin)


def _refusals(origin: str) -> contextlib.AbstractContextManager[None]:
    """A refusal of the control layer as a DevFailed a user can read."""
    return refusals(origin, ControlRefused, BadValue, OutsideDataRoots, reason="Pilatus_Refused")


def default_saving_directory(device_name: str) -> str:
    """`<the stack's data directory>/<device>`."""
    return str(stack_data_directory() / device_name.replace("/", "_"))


def pair(name: str, values: list[str]) -> tuple[int, int]:
    """Two integers from a property given as ["1475", "1679"], ["1475, 1679"] or ["1475x1679"]."""
    words = [w for w in re.split(r"[\s,x]+", " ".join(values)) if w]
    try:
        numbers = [int(w) for w in words]
    except ValueError:
        numbers = []
    if len(numbers) != 2:
        raise ValueError(f"device property {name} needs two integers x, y (e.g. 1475, 1679), got {values!r}")
    return numbers[0], numbers[1]


def binned(frame: np.ndarray, factor: int) -> np.ndarray:
    """Sum of `factor` x `factor` blocks (gaps counted as 0), edges that do not fill a block dropped."""
    if factor <= 1:
        return np.maximum(frame, 0)
    rows, cols = frame.shape[0] // factor, frame.shape[1] // factor
    block = np.maximum(frame[: rows * factor, : cols * factor], 0)
    return block.reshape(rows, factor, cols, factor).sum(axis=(1, 3), dtype=np.int32)


def roi_counts(frame: np.ndarray, roi: tuple[int, ...]) -> float:
    """Counts inside roi (x, y, width, height; zero width or height: whole frame), gaps (-1) excluded."""
    x, y, width, height = roi
    region = frame[y : y + height, x : x + width] if width and height else frame
    return float(np.maximum(region, 0).sum(dtype=np.int64))


def _string_setting(name: str, doc: str) -> attribute:
    """A LimaCCDs DevString setting held by the device (Lima's value set, identity only where noted)."""

    def read(self: "LimaCCDs") -> str:
        return self._settings[name]

    def write(self: "LimaCCDs", value: str) -> None:
        with _refusals(name):
            self._settings[name] = lima_choice(name, value)

    return attribute(name=name, dtype=str, access=AttrWriteType.READ_WRITE, fget=read, fset=write, doc=doc)


def _beam_center(axis: int, doc: str) -> attribute:
    """A memorized beam-centre coordinate in the detector's pixels (axis 0: x, 1: y); files give it in
    the saved frame's pixels (after the image operations): NXmx beam_center_x/_y, CBF Beam_xy."""
    name = ("beam_center_x", "beam_center_y")[axis]

    def read(self: "LimaCCDs") -> float:
        return self._control.beam_center[axis]

    def write(self: "LimaCCDs", value: float) -> None:
        with _refusals(name):
            centre = list(self._control.beam_center)
            centre[axis] = value
            self._control.set_detector_position(beam_center=(centre[0], centre[1]))

    return attribute(
        name=name,
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        unit="pixel",
        format="%.2f",
        fget=read,
        fset=write,
        doc=f"{doc} (default: its middle); NXmx {name} and CBF Beam_xy give it in the saved frame's pixels",
    )


class LimaCCDs(Device):
    """A Pilatus hybrid pixel detector (simulated backend) as a LimaCCDs device."""

    bluesky_roles = class_property(dtype=(str,), default_value=BLUESKY_ROLES)

    backend = device_property(dtype=str, default_value="sim", doc="sim (the only backend so far)")
    sample_axis = device_property(
        dtype=str,
        default_value="sim/aerotech/omega",
        doc="axis the sample model follows: a device (its `position`) or a full attribute name; empty: none",
    )
    trigger_source = device_property(
        dtype=str,
        default_value="sim/aerotech/ctrl/pso_pulse_count",
        doc="cumulative pulse counter attribute: one frame per pulse in the external trigger modes",
    )
    detector_size = device_property(dtype=(str,), default_value=["1475", "1679"], doc="width, height in pixels")
    module_size = device_property(dtype=(str,), default_value=["487", "195"], doc="module width, height")
    module_gap = device_property(dtype=(str,), default_value=["7", "17"], doc="gap between modules: x, y")
    threshold_time = device_property(
        dtype=float, default_value=3.0, doc="seconds a threshold change takes (SETTING_THRESHOLD)"
    )
    peak_position = device_property(dtype=float, default_value=0.0, doc="sample axis position of the peak")
    peak_width = device_property(dtype=float, default_value=1.0, doc="Gaussian sigma of the peak (axis units)")
    peak_counts = device_property(dtype=float, default_value=400.0, doc="counts in a bright spot pixel")
    noise_bank_size = device_property(dtype=int, default_value=8, doc="precomputed background realisations")
    data_roots = device_property(
        dtype=(str,),
        default_value=[],
        doc="directories files may be written under (symbolic links resolved); empty: the stack's data folder",
    )
    default_directory = device_property(
        dtype=str,
        default_value="",
        doc="initial saving_directory, inside data_roots (empty: a data folder of the stack)",
    )
    preview_binning = device_property(dtype=int, default_value=4, doc="binning of the image_preview")
    preview_period = device_property(
        dtype=float, default_value=0.5, doc="shortest time between two image_preview change events (s)"
    )
    compression_threads = device_property(
        dtype=int, default_value=2, doc="threads compressing HDF5BS frames (0: the writer thread itself)"
    )
    buffer_max_memory = device_property(
        dtype=float, default_value=128.0, doc="MiB of frames kept for readImage/readImageSeq (buffer_max_number)"
    )
    data_array_version = device_property(
        dtype=int, default_value=4, doc="DATA_ARRAY header version of readImage/readImageSeq/last_image: 2, 3 or 4"
    )

    # -- lifecycle ----------------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self.set_state(DevState.INIT)
        self._followers: list[AttributeFollower] = []
        self._ctl: AcquisitionControl | None = None
        self._config_error = ""
        self._sample_position = float("nan")
        self._sample_error = ""
        self._trigger_error = ""
        self._pulses = PulseCounter()
        self._preview_frame: Frame | None = None
        self._preview_time = 0.0
        self._roi = (0, 0, 0, 0)
        self._roi_cache: tuple[Frame, tuple[int, ...], float] | None = None
        self._settings = {"video_mode": "Y32"}
        self._acc_saturated_threshold = 1 << 16  # CtAccumulation's default pixelThresholdValue
        self._publisher: EventPublisher[tuple[str, Any]] = EventPublisher("pilatus-events", self._publish)
        for name in (*EVENT_ATTRIBUTES, "image_preview", "last_image", "State", "Status"):
            self.set_change_event(name, True, False)
        try:
            self._setup()
        except (ValueError, TypeError, OSError) as exc:
            # A misconfigured device says why in Status instead of taking the server down.
            self._config_error = f"configuration error: {exc}"
            self.set_state(DevState.FAULT)
            self.set_status(self._config_error)
            return
        publish_roles(self)
        self._notify("acq_status", self._control.acq_status.value)

    def _setup(self) -> None:
        if self.data_array_version not in data_array.VERSIONS:
            raise ValueError(f"device property data_array_version {self.data_array_version} is not 2, 3 or 4")
        width, height = pair("detector_size", self.detector_size)
        geometry = Geometry(width, height, *pair("module_size", self.module_size), *pair("module_gap", self.module_gap))
        roots = DataRoots.from_setting(self.data_roots)
        directory = self.default_directory or default_saving_directory(self.get_name())
        if not self.data_roots:
            roots.roots[0].mkdir(parents=True, exist_ok=True)
        if not self.default_directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._backend = make_backend(
            self.backend,
            geometry,
            peak=(self.peak_position, self.peak_width, self.peak_counts),
            noise_bank_size=self.noise_bank_size,
            threshold_time=self.threshold_time,
        )
        saving = SavingSettings(directory=directory).after_existing_files()
        self._ctl = AcquisitionControl(
            self._backend,
            self._notify,
            # A restarted server continues the numbering instead of refusing to overwrite.
            saving=saving,
            data_roots=roots,
            trigger_source=self.trigger_source,
            description=f"Pilatus {width}x{height} (simulated)",
            compression_threads=max(0, self.compression_threads),
            buffer_bytes=int(self.buffer_max_memory * 2**20),
        )
        try:
            self._ctl.configure_saving(directory=directory)  # default_directory must lie in a root too
        except OutsideDataRoots as exc:
            self._ctl.close()
            self._ctl = None
            raise OutsideDataRoots(f"device property default_directory: {exc}") from exc
        share_control(self._ctl)  # the Pilatus camera device drives the same detector
        self._follow()

    @property
    def _control(self) -> AcquisitionControl:
        if self._ctl is None:
            refuse("Pilatus_Config", self._config_error, "LimaCCDs")
        return self._ctl

    def _follow(self) -> None:
        if self.sample_axis and isinstance(self._backend, SampleInput):
            moved = functools.partial(self._sample_moved, self._backend)
            follower = AttributeFollower(self.sample_axis, "position", moved, self._sample_lost)
            self._followers.append(follower)
        if self.trigger_source:
            follower = AttributeFollower(self.trigger_source, "pso_pulse_count", self._pulse_count, self._trigger_lost)
            self._followers.append(follower)

    def delete_device(self) -> None:
        for follower in getattr(self, "_followers", []):
            follower.close()
        ctl = getattr(self, "_ctl", None)
        if ctl is not None:
            share_control(None)
            ctl.close()
        if hasattr(self, "_publisher"):
            self._publisher.close(wait=5.0)
        super().delete_device()

    # -- followed attributes (event threads) --------------------------------------------------
    def _sample_moved(self, backend: SampleInput, value: Any) -> None:
        self._sample_position = float(value)
        self._sample_error = ""
        backend.set_sample_position(self._sample_position)

    def _sample_lost(self, message: str) -> None:
        self._sample_error = message

    def _pulse_count(self, value: Any) -> None:
        self._trigger_error = ""
        self._control.external_pulses(self._pulses.update(value))

    def _trigger_lost(self, message: str) -> None:
        self._trigger_error = message
        self._pulses.reset()

    # -- control reports (any thread) ---------------------------------------------------------
    def _notify(self, name: str, value: Any) -> None:
        """Queue a change event for the publisher thread (the control layer reports under its lock)."""
        self._publisher.offer((name, value))

    def _publish(self, item: tuple[str, Any]) -> None:
        name, value = item
        self.push_change_event(name, value)
        if name == "acq_status":
            self.set_state(_STATE[AcqStatus(value)])
            self.set_status(self._status_text(AcqStatus(value)))
            self.push_change_event("State")
            self.push_change_event("Status")
            if value != AcqStatus.Running.value:
                self._push_preview(final=True)
        elif name == "last_image_ready" and value >= 0:
            self._push_preview(final=False)

    def _push_preview(self, *, final: bool) -> None:
        """`image_preview` change events: at most every `preview_period` s, and the last frame at the end."""
        frame = self._control.latest_frame
        if frame is None or frame is self._preview_frame:
            return
        now = time.monotonic()
        if not final and now - self._preview_time < self.preview_period:
            return
        self._preview_frame, self._preview_time = frame, now
        self.push_change_event("image_preview", self._preview(frame))

    def _preview(self, frame: Frame | None) -> np.ndarray:
        factor = max(1, self.preview_binning)
        if frame is None:
            g = self._geometry()
            return np.zeros((g.height // factor, g.width // factor), dtype=np.int32)
        return binned(frame.data, factor)

    def _status_text(self, status: AcqStatus) -> str:
        return {
            AcqStatus.Ready: "Ready: waiting for prepareAcq/startAcq",
            AcqStatus.Running: "Running: acquiring frames",
            AcqStatus.Configuration: "Configuration: setting the energy threshold (SETTING_THRESHOLD)",
            AcqStatus.Fault: f"Fault: {self._control.fault_error} (reset clears it)",
        }[status]

    def dev_state(self) -> DevState:
        # Computed on read, so a read right after a command is never behind the event queue.
        return DevState.FAULT if self._ctl is None else _STATE[self._ctl.acq_status]

    def dev_status(self) -> str:
        if self._ctl is None:
            return self._config_error
        text = self._status_text(self._ctl.acq_status)
        problems = [f"{self.sample_axis}: {self._sample_error}" if self._sample_error else ""]
        problems.append(f"{self.trigger_source}: {self._trigger_error}" if self._trigger_error else "")
        notes = "; ".join(p for p in problems if p)
        return f"{text}\n(following: {notes})" if notes else text

    def _geometry(self) -> Geometry:
        """The frames' geometry after the image operations (image_bin, image_roi ...)."""
        return self._control.image_geometry

    def _encoded(self, frames: list[Frame], category: int) -> tuple[str, bytes]:
        data = frames[0].data if category == data_array.Category.IMAGE else np.stack([f.data for f in frames])
        buffer = data_array.encode(
            data, category=category, version=self.data_array_version, image_number=frames[0].index
        )
        return "DATA_ARRAY", buffer

    # -- camera -------------------------------------------------------------------------------
    @attribute(dtype=str, doc="the Lima camera plugin this device stands for")
    def lima_type(self) -> str:
        return CAMERA_TYPE

    @attribute(dtype=str, doc="detector type (Lima HwDetInfo)")
    def camera_type(self) -> str:
        return CAMERA_TYPE

    @attribute(dtype=str, doc="detector model (Lima HwDetInfo)")
    def camera_model(self) -> str:
        g = self._control.backend.geometry
        return f"PILATUS {g.width}x{g.height} (simulated)"

    @attribute(dtype=(float,), max_dim_x=2, unit="m", doc="Pixel size: x_size, y_size")
    def camera_pixelsize(self) -> tuple[float, float]:
        return (PIXEL_SIZE_M, PIXEL_SIZE_M)

    # -- acquisition --------------------------------------------------------------------------
    @attribute(dtype="int32", access=AttrWriteType.READ_WRITE, min_value=0, doc="frames to take; 0: until stopAcq")
    def acq_nb_frames(self) -> int:
        return self._control.acquisition.nb_frames

    @acq_nb_frames.write
    def acq_nb_frames(self, value: int) -> None:
        with _refusals("acq_nb_frames"):
            self._control.configure(nb_frames=value)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%.6f",
        min_value=VALID_RANGES[0],
        max_value=VALID_RANGES[1],
        doc="exposure time of one frame",
    )
    def acq_expo_time(self) -> float:
        return self._control.acquisition.expo_time

    @acq_expo_time.write
    def acq_expo_time(self, value: float) -> None:
        with _refusals("acq_expo_time"):
            self._control.configure(expo_time=value)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%.6f",
        min_value=VALID_RANGES[2],
        max_value=VALID_RANGES[3],
        doc="time between the end of one exposure and the start of the next (internal trigger)",
    )
    def latency_time(self) -> float:
        return self._control.acquisition.latency_time

    @latency_time.write
    def latency_time(self, value: float) -> None:
        with _refusals("latency_time"):
            self._control.configure(latency_time=value)

    @attribute(
        dtype=(float,),
        max_dim_x=4,
        unit="s",
        doc="valid time ranges: min_exposure, max_exposure, min_latency, max_latency",
    )
    def valid_ranges(self) -> tuple[float, ...]:
        return VALID_RANGES

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="INTERNAL_TRIGGER: startAcq takes acq_nb_frames frames; INTERNAL_TRIGGER_MULTI: one frame "
        "per softTrigger (or startAcq); EXTERNAL_TRIGGER, EXTERNAL_TRIGGER_MULTI, EXTERNAL_GATE: one frame "
        "per pulse of trigger_source; getAttrStringValueList lists them",
    )
    def acq_trigger_mode(self) -> str:
        return self._control.acquisition.trigger_mode.name

    @acq_trigger_mode.write
    def acq_trigger_mode(self, value: str) -> None:
        with _refusals("acq_trigger_mode"):
            self._control.configure(trigger_mode=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="SINGLE: one exposure per frame; ACCUMULATION: each frame is the sum of acc_nb_frames "
        "sub-frames of at most acc_max_expo_time; CONCATENATION is refused (no blocks of frames)",
    )
    def acq_mode(self) -> str:
        return self._control.acquisition.acq_mode

    @acq_mode.write
    def acq_mode(self, value: str) -> None:
        with _refusals("acq_mode"):
            self._control.configure(acq_mode=value)

    @attribute(dtype=str, doc="Ready, Running (until every frame is saved), Fault, Configuration")
    def acq_status(self) -> str:
        return self._control.acq_status.value

    @attribute(dtype=str, doc="why acq_status is Fault (No error otherwise)")
    def acq_status_fault_error(self) -> str:
        return self._control.fault_error or "No error"

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%.6f",
        min_value=VALID_RANGES[0],
        max_value=VALID_RANGES[1],
        doc="ACCUMULATION: longest sub-frame exposure (default 1 s)",
    )
    def acc_max_expo_time(self) -> float:
        return self._control.acquisition.acc_max_expo_time

    @acc_max_expo_time.write
    def acc_max_expo_time(self, value: float) -> None:
        with _refusals("acc_max_expo_time"):
            self._control.configure(acc_max_expo_time=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="ACCUMULATION: LIVE (the sub-frames' exposures add up to acq_expo_time) or REAL "
        "(acq_expo_time includes the dead time between sub-frames)",
    )
    def acc_time_mode(self) -> str:
        return self._control.acquisition.acc_time_mode

    @acc_time_mode.write
    def acc_time_mode(self, value: str) -> None:
        with _refusals("acc_time_mode"):
            self._control.configure(acc_time_mode=value)

    @attribute(dtype=float, unit="s", doc="ACCUMULATION: exposure of one sub-frame (-1 in SINGLE)")
    def acc_expo_time(self) -> float:
        split = self._control.accumulation
        return split.expo_time if split else NOT_APPLICABLE

    @attribute(dtype="int32", doc="ACCUMULATION: sub-frames per frame (-1 in SINGLE)")
    def acc_nb_frames(self) -> int:
        split = self._control.accumulation
        return split.nb_frames if split else NOT_APPLICABLE

    @attribute(dtype=float, unit="s", doc="ACCUMULATION: dead time between the sub-frames of a frame (-1 in SINGLE)")
    def acc_dead_time(self) -> float:
        split = self._control.accumulation
        return split.dead_time if split else NOT_APPLICABLE

    @attribute(
        dtype=float, unit="s", doc="ACCUMULATION: exposure of a frame, acc_nb_frames x acc_expo_time (-1 in SINGLE)"
    )
    def acc_live_time(self) -> float:
        split = self._control.accumulation
        return split.live_time if split else NOT_APPLICABLE

    @attribute(
        dtype=bool,
        access=AttrWriteType.READ_WRITE,
        doc="saturated-pixel counting during accumulation: False (this server has no saturated counters)",
    )
    def acc_saturated_active(self) -> bool:
        return False

    @acc_saturated_active.write
    def acc_saturated_active(self, value: bool) -> None:
        if value:
            refuse(
                "Pilatus_Refused",
                "acc_saturated_active True is not available: this server does not count saturated pixels "
                "(no readAccSaturatedImageCounter); use False",
                "acc_saturated_active",
            )

    @attribute(
        dtype="int64",
        access=AttrWriteType.READ_WRITE,
        doc="counts above which a pixel is saturated (kept; Lima's default 65536)",
    )
    def acc_saturated_threshold(self) -> int:
        return self._acc_saturated_threshold

    @acc_saturated_threshold.write
    def acc_saturated_threshold(self, value: int) -> None:
        self._acc_saturated_threshold = int(value)

    @attribute(
        dtype="int32",
        access=AttrWriteType.READ_WRITE,
        doc="saturated-pixel callback level: -1, no accumulation threshold plugin loaded",
    )
    def acc_saturated_cblevel(self) -> int:
        return NOT_APPLICABLE

    @acc_saturated_cblevel.write
    def acc_saturated_cblevel(self, value: int) -> None:
        refuse(
            "Pilatus_Refused",
            "acc_saturated_cblevel: Accumulation threshold plugins not loaded (LimaCCDs' "
            "AccThresholdCallbackModule); this server has none",
            "acc_saturated_cblevel",
        )

    @attribute(dtype="int32", doc="index of the newest frame read out (-1: none yet)")
    def last_image_acquired(self) -> int:
        return self._control.last_image_acquired

    @attribute(dtype="int32", doc="index of the newest frame available (-1: none yet)")
    def last_image_ready(self) -> int:
        return self._control.last_image_ready

    @attribute(dtype="int32", doc="index of the newest frame written and flushed to a file (-1: none yet)")
    def last_image_saved(self) -> int:
        return self._control.last_image_saved

    @attribute(dtype=bool, doc="the detector waits for its next trigger")
    def ready_for_next_image(self) -> bool:
        return self._control.ready_for_next_image

    @attribute(dtype=bool, doc="acq_status is Ready: a new acquisition can be prepared")
    def ready_for_next_acq(self) -> bool:
        return self._control.acq_status == AcqStatus.Ready

    @attribute(dtype="int32", doc="trigger pulses counted during the current acquisition")
    def trigger_pulses(self) -> int:
        return self._control.trigger_pulses

    @attribute(
        dtype="int32",
        doc="frames (as the image operations make them) kept in memory for readImage/readImageSeq "
        "(device property buffer_max_memory)",
    )
    def buffer_max_number(self) -> int:
        return self._control.buffer.capacity

    # -- saving -------------------------------------------------------------------------------
    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="absolute directory the files go to, inside data_roots")
    def saving_directory(self) -> str:
        return self._control.saving.directory

    @saving_directory.write
    def saving_directory(self, value: str) -> None:
        with _refusals("saving_directory"):
            self._control.configure_saving(directory=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="file name prefix (no '/' or '..'); writing it sets saving_next_number past the last file of "
        "that prefix under ABORT, to 0 otherwise (as LimaCCDs)",
    )
    def saving_prefix(self) -> str:
        return self._control.saving.prefix

    @saving_prefix.write
    def saving_prefix(self, value: str) -> None:
        with _refusals("saving_prefix"):
            self._control.set_prefix(value)

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="file name suffix, e.g. .h5 (no '/' or '..')")
    def saving_suffix(self) -> str:
        return self._control.saving.suffix

    @saving_suffix.write
    def saving_suffix(self, value: str) -> None:
        with _refusals("saving_suffix"):
            self._control.configure_saving(suffix=value)

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="printf format of the file number, e.g. %04d")
    def saving_index_format(self) -> str:
        return self._control.saving.index_format

    @saving_index_format.write
    def saving_index_format(self, value: str) -> None:
        with _refusals("saving_index_format"):
            self._control.configure_saving(index_format=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="HDF5: uncompressed; HDF5BS: bitshuffle-LZ4 (HDF5 filter 32008, read with hdf5plugin); CBF: one frame "
        "per file (saving_frame_per_file 1). Writing it sets saving_suffix to the format's (.h5, .cbf), as LimaCCDs",
    )
    def saving_format(self) -> str:
        return self._control.saving.format.name

    @saving_format.write
    def saving_format(self, value: str) -> None:
        with _refusals("saving_format"):
            self._control.configure_saving(format=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="MANUAL: frames saved by writeImage; AUTO_FRAME: every frame; AUTO_HEADER: each frame once "
        "its header is set by setImageHeader",
    )
    def saving_mode(self) -> str:
        return self._control.saving.mode

    @saving_mode.write
    def saving_mode(self, value: str) -> None:
        with _refusals("saving_mode"):
            self._control.configure_saving(mode=value)

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="SOFTWARE: this server writes the files")
    def saving_managed_mode(self) -> str:
        return self._control.saving.managed_mode

    @saving_managed_mode.write
    def saving_managed_mode(self, value: str) -> None:
        with _refusals("saving_managed_mode"):
            self._control.configure_saving(managed_mode=value)

    @attribute(
        dtype="int32",
        access=AttrWriteType.READ_WRITE,
        min_value=-1,
        max_value=MAX_FILE_NUMBER,
        doc="number of the next file; advances as each file is closed (Lima CtSaving); -1 counts as 0",
    )
    def saving_next_number(self) -> int:
        return self._control.saving.next_number

    @saving_next_number.write
    def saving_next_number(self, value: int) -> None:
        with _refusals("saving_next_number"):
            self._control.configure_saving(next_number=value)

    @attribute(
        dtype="int32",
        access=AttrWriteType.READ_WRITE,
        min_value=1,
        doc="frames per file before the next file (1 with saving_format CBF)",
    )
    def saving_frame_per_file(self) -> int:
        return self._control.saving.frames_per_file

    @saving_frame_per_file.write
    def saving_frame_per_file(self, value: int) -> None:
        with _refusals("saving_frame_per_file"):
            self._control.configure_saving(frames_per_file=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="ABORT: prepareAcq refuses when a file of the acquisition exists; OVERWRITE: replace it; "
        "APPEND: add the frames to the file (HDF5: after the last entry's frames; CBF: a data block per "
        "frame); MULTISET: the whole acquisition into one file (HDF5: as its next entry_NNNN). Under APPEND "
        "and MULTISET saving_next_number stays (Lima's CtSaving). Existing files: plain files only",
    )
    def saving_overwrite_policy(self) -> str:
        return self._control.saving.overwrite_policy

    @saving_overwrite_policy.write
    def saving_overwrite_policy(self, value: str) -> None:
        with _refusals("saving_overwrite_policy"):
            self._control.configure_saving(overwrite_policy=value)

    @attribute(
        dtype=(str,),
        max_dim_x=65535,
        access=AttrWriteType.READ_WRITE,
        doc="key=value entries written into every file: HDF5 entry_NNNN/instrument/Pilatus/header/<key> "
        "(with the first frame's header), CBF items _<category>.<column> for keys category/column, else _Misc.<key>",
    )
    def saving_common_header(self) -> tuple[str, ...]:
        return self._control.saving.common_header

    @saving_common_header.write
    def saving_common_header(self, value: list[str]) -> None:
        with _refusals("saving_common_header"):
            bad = [entry for entry in value if "=" not in entry]
            if bad:
                raise BadValue(f"saving_common_header entries must be key=value, got {bad[0]!r}")
            self._control.configure_saving(common_header=value)

    # Memorized (restored at start-up from the Tango database): they change with the experiment
    # (the detector stage moves, the beam is realigned) without a server restart.
    beam_center_x = _beam_center(0, "x (fast, column) detector pixel where the direct beam meets the detector")
    beam_center_y = _beam_center(1, "y (slow, row) detector pixel where the direct beam meets the detector")

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        memorized=True,
        hw_memorized=True,
        unit="m",
        format="%.4f",
        min_value=1e-3,
        doc="sample to detector distance along the beam; NXmx distance and the detector's translation, "
        "CBF Detector_distance",
    )
    def detector_distance(self) -> float:
        return self._control.detector_distance

    @detector_distance.write
    def detector_distance(self, value: float) -> None:
        with _refusals("detector_distance"):
            self._control.set_detector_position(distance=value)

    @attribute(
        dtype=str,
        doc='JSON announcing each file at open and close: {"file_path", "file_type": "h5", '
        '"hinted_location": {"data": <dataset>}, "done", "success"}',
    )
    def file_event(self) -> str:
        return self._control.file_event

    # -- image --------------------------------------------------------------------------------
    @attribute(dtype="uint32", unit="px", doc="frame width in pixels")
    def image_width(self) -> int:
        return self._geometry().width

    @attribute(dtype="uint32", unit="px", doc="frame height in pixels")
    def image_height(self) -> int:
        return self._geometry().height

    @attribute(
        dtype=str,
        doc="pixel type (Lima name): Bpp32S, signed 32-bit (ACCUMULATION: acc_out_type, Bpp32S); gaps are -1",
    )
    def image_type(self) -> str:
        return "Bpp32S"

    @attribute(dtype=("uint32",), max_dim_x=4, doc="Image sizes: Signed, Depth, Width, Height")
    def image_sizes(self) -> tuple[int, ...]:
        g = self._geometry()
        return (1, 4, g.width, g.height)

    @attribute(dtype=("uint32",), max_dim_x=2, unit="px", doc="largest image (the detector): width, height")
    def image_max_dim(self) -> tuple[int, ...]:
        g = self._control.backend.geometry
        return (g.width, g.height)

    @attribute(
        dtype=("int32",),
        max_dim_x=4,
        access=AttrWriteType.READ_WRITE,
        unit="px",
        doc="x, y, width, height of the frame kept, in the binned, flipped and rotated frame; reads the "
        "whole frame when none is set; [0, 0, 0, 0] resets",
    )
    def image_roi(self) -> tuple[int, ...]:
        return self._control.image.shown_roi

    @image_roi.write
    def image_roi(self, value: np.ndarray) -> None:
        with _refusals("image_roi"):
            if len(value) != 4:
                raise BadValue(f"image_roi needs 4 integers x, y, width, height, got {list(value)}")
            x, y, width, height = (int(v) for v in value)
            self._control.configure_image(roi=(x, y, width, height))

    @attribute(
        dtype=("uint32",),
        max_dim_x=2,
        access=AttrWriteType.READ_WRITE,
        doc="binning x, y of the output frame (1 or more; edge pixels that fill no bin are dropped)",
    )
    def image_bin(self) -> tuple[int, ...]:
        return self._control.image.bin

    @image_bin.write
    def image_bin(self, value: np.ndarray) -> None:
        with _refusals("image_bin"):
            if len(value) != 2:
                raise BadValue(f"image_bin needs 2 integers x, y, got {list(value)}")
            self._control.configure_image(bin=(int(value[0]), int(value[1])))

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="SUM: a binned pixel adds its pixels; MEAN: their integer mean (a bin holding a gap is -1)",
    )
    def image_bin_mode(self) -> str:
        return self._control.image.bin_mode

    @image_bin_mode.write
    def image_bin_mode(self, value: str) -> None:
        with _refusals("image_bin_mode"):
            self._control.configure_image(bin_mode=value)

    @attribute(
        dtype=(bool,), max_dim_x=2, access=AttrWriteType.READ_WRITE, doc="flip x (mirror columns), y (mirror rows)"
    )
    def image_flip(self) -> tuple[bool, ...]:
        return self._control.image.flip

    @image_flip.write
    def image_flip(self, value: np.ndarray) -> None:
        with _refusals("image_flip"):
            if len(value) != 2:
                raise BadValue(f"image_flip needs 2 booleans x, y, got {list(value)}")
            self._control.configure_image(flip=(bool(value[0]), bool(value[1])))

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="NONE, 90 (clockwise as displayed), 180, 270; applied after bin and flip, before image_roi",
    )
    def image_rotation(self) -> str:
        return self._control.image.rotation

    @image_rotation.write
    def image_rotation(self, value: str) -> None:
        with _refusals("image_rotation"):
            self._control.configure_image(rotation=value)

    video_mode = _string_setting("video_mode", "Y32: the frames' 32-bit counts")

    @attribute(dtype=CmdArgType.DevEncoded, doc="the newest frame as Lima's DATA_ARRAY (Image); read on request")
    def last_image(self) -> tuple[str, bytes]:
        with _refusals("last_image"):
            return self._encoded(self._control.frames(-1, 0), data_array.Category.IMAGE)

    @attribute(
        dtype=((np.int32,),),
        max_dim_x=4096,
        max_dim_y=4096,
        unit="counts",
        doc="the newest frame binned by preview_binning (sums, gaps as 0); change events at most every "
        "preview_period s and for the last frame; a preview, not a data path: use the file",
    )
    def image_preview(self) -> np.ndarray:
        return self._preview(self._control.latest_frame)

    @attribute(
        dtype=(int,),
        max_dim_x=4,
        access=AttrWriteType.READ_WRITE,
        unit="px",
        doc="region of interest for roi_sum: x, y, width, height; width or height 0: the whole frame",
    )
    def roi(self) -> tuple[int, ...]:
        return self._roi

    @roi.write
    def roi(self, value: np.ndarray) -> None:
        if len(value) != 4 or min(value) < 0:
            text = f"roi must be 4 non-negative integers x, y, width, height; got {list(value)}"
            refuse("Pilatus_BadRoi", text, "roi")
        x, y, width, height = (int(v) for v in value)
        self._roi = (x, y, width, height)

    @attribute(
        dtype=float,
        unit="counts",
        format="%.0f",
        doc="sum of the counts of the newest frame inside roi (module gaps excluded): a scalar for step scans",
    )
    def roi_sum(self) -> float:
        frame = self._control.latest_frame
        if frame is None:
            return 0.0
        cached = self._roi_cache
        if cached is None or cached[0] is not frame or cached[1] != self._roi:
            cached = (frame, self._roi, roi_counts(frame.data, self._roi))
            self._roi_cache = cached
        return cached[2]

    @attribute(dtype=float, format="%.4f", doc="position of sample_axis as last seen (NaN: not known)")
    def sample_position(self) -> float:
        return self._sample_position

    # -- commands -----------------------------------------------------------------------------
    @command(dtype_in=str, dtype_out=(str,), doc_in="attribute name", doc_out="its allowed string values")
    def getAttrStringValueList(self, name: str) -> list[str]:
        name = name.lower()
        if name == "saving_format":
            return [f.name for f in SavingFormat]
        return list(LIMA_VALUES.get(name, ()))  # Lima answers an empty list for other names

    @command(dtype_in=str, dtype_out=str, doc_in="plugin or camera type", doc_out="its device name, or empty")
    def getPluginDeviceNameFromType(self, plugin_type: str) -> str:
        wanted = plugin_type.lower().replace("deviceserver", "")
        util = tango.Util.instance()
        for klass in util.get_class_list():
            name = klass.get_name()
            devices = util.get_device_list_by_class(name) if name not in ("DServer", "LimaCCDs") else []
            if name.lower().replace("deviceserver", "") == wanted and devices:
                return devices[0].get_name()
        return ""

    @command(doc_in="check the settings and open the first file (announced in file_event)")
    def prepareAcq(self) -> None:
        with _refusals("prepareAcq"):
            self._control.prepare()

    @command(doc_in="start the prepared acquisition (INTERNAL_TRIGGER_MULTI: each startAcq takes one frame)")
    def startAcq(self) -> None:
        with _refusals("startAcq"):
            self._control.start()

    @command(doc_in="end after the current frame; the file is closed with every frame taken")
    def stopAcq(self) -> None:
        with _refusals("stopAcq"):
            self._control.stop()

    @command(doc_in="end now; frames already taken are still saved and the file closed")
    def abortAcq(self) -> None:
        with _refusals("abortAcq"):
            self._control.abort()
            # LimaCCDs returns from abortAcq with acq_status Ready (sardana-limaccd checks at once);
            # bounded well inside a client's 3 s timeout: a long file close finishes after.
            self._control.wait_until_not_running(ABORT_WAIT_S)

    @command(doc_in="abort what runs and leave Fault: acq_status Ready")
    def reset(self) -> None:
        with _refusals("reset"):
            self._control.reset()

    @command(doc_in="one frame (INTERNAL_TRIGGER_MULTI, acquisition running)")
    def softTrigger(self) -> None:
        with _refusals("softTrigger"):
            self._control.soft_trigger()

    @command(
        dtype_in="int32", dtype_out=CmdArgType.DevEncoded, doc_in="frame number (-1: newest)", doc_out="DATA_ARRAY"
    )
    def readImage(self, index: int) -> tuple[str, bytes]:
        with _refusals("readImage"):
            frames = self._control.frames(index, index + 1) if index >= 0 else self._control.frames(-1, 0)
            return self._encoded(frames, data_array.Category.IMAGE)

    @command(dtype_in="int32", dtype_out=CmdArgType.DevEncoded, doc_in="last frame number seen", doc_out="DATA_ARRAY")
    def readLastImage(self, seen: int) -> tuple[str, bytes]:
        if self._control.last_image_ready <= seen:
            refuse(
                "Pilatus_NotYet",
                f"Frame(s) not available yet: last_image_ready is {self._control.last_image_ready}",
                "readLastImage",
            )
        return self.readImage(-1)

    @command(
        dtype_in=("int64",),
        dtype_out=CmdArgType.DevEncoded,
        doc_in="start, end[, step[, acq_tag]]: frames start .. end-1",
        doc_out="DATA_ARRAY (ImageStack)",
    )
    def readImageSeq(self, sequence: np.ndarray) -> tuple[str, bytes]:
        with _refusals("readImageSeq"):
            numbers = [int(n) for n in sequence]
            if len(numbers) < 2 or (len(numbers) > 2 and numbers[2] != 1):
                raise BadValue(f"readImageSeq needs start, end (step 1), got {numbers}")
            return self._encoded(self._control.frames(numbers[0], numbers[1]), data_array.Category.IMAGE_STACK)

    @command(dtype_in="int32", dtype_out=(np.uint8,), doc_in="frame number (-1: newest)", doc_out="its raw bytes")
    def getImage(self, index: int) -> np.ndarray:
        with _refusals("getImage"):
            frames = self._control.frames(index, index + 1) if index >= 0 else self._control.frames(-1, 0)
            return np.frombuffer(np.ascontiguousarray(frames[0].data).tobytes(), dtype=np.uint8)

    @command(
        dtype_in=(str,),
        doc_in="headers of frames: '<frame>;<key>=<value>\\n<key>=<value>...' each (LimaCCDs' delimiters)",
    )
    def setImageHeader(self, headers: list[str]) -> None:
        with _refusals("setImageHeader"):
            parsed: dict[int, dict[str, str]] = {}
            for entry in headers:
                number, _, text = entry.partition(";")
                if not number.strip().lstrip("-").isdigit():
                    raise BadValue(f"setImageHeader entry {entry[:40]!r} must start with '<frame number>;'")
                lines = (line.split("=", 1) for line in text.split("\n") if "=" in line)
                parsed[int(number)] = {key.strip(): value.strip().rstrip(";") for key, value in lines if key.strip()}
            self._control.set_frame_headers(parsed)

    @command(doc_in="forget the headers set by setImageHeader")
    def resetFrameHeaders(self) -> None:
        self._control.reset_frame_headers()

    @command(doc_in="empty saving_common_header")
    def resetCommonHeader(self) -> None:
        with _refusals("resetCommonHeader"):
            self._control.reset_common_header()

    @command(doc_in="frame number (-1: newest), saved into the next file (saving_mode MANUAL)", dtype_in="int32")
    def writeImage(self, index: int) -> None:
        with _refusals("writeImage"):
            self._control.write_image(index)


def main(args: list[str] | None = None) -> None:
    # One trigger event per pulse arrives in bursts, and up to four counter events leave per
    # frame: room beyond ZMQ's default queue of 1000 so neither side drops events in a burst.
    os.environ.setdefault("TANGO_EVENT_BUFFER_HWM", "20000")
    os.environ.setdefault("TANGO_DS_EVENT_BUFFER_HWM", "20000")
    run((LimaCCDs, Pilatus), args=args)
