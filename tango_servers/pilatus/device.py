"""The Pilatus Tango device: LimaCCDs names over `control.AcquisitionControl`.

Default device `sim/pilatus/1`. A LimaCCDs client drives it as usual::

    acq_trigger_mode = INTERNAL_TRIGGER; acq_nb_frames = 10; acq_expo_time = 0.1
    prepareAcq(); startAcq()            # acq_status Running ... Ready once every frame is on disk

Step scans: INTERNAL_TRIGGER_MULTI, prepareAcq, startAcq, then `softTrigger` once per point
(one frame each; `last_image_saved` tells when it is on disk). Fly scans: EXTERNAL_GATE (or
EXTERNAL_TRIGGER / EXTERNAL_TRIGGER_MULTI), acq_nb_frames = N, prepareAcq, startAcq, then arm
the PSO: every pulse on `trigger_source` makes one frame, and the acquisition ends after N.

`file_event` (JSON, change events) announces each file at open (done=false) and at close
(done=true, success=true|false) with `file_path`, `file_type` "h5" and `hinted_location`
{"data": "/entry_0000/measurement/data"}.
"""

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, class_property, command, device_property, run

from ..common import AttributeFollower, EventPublisher, publish_roles, refusals, refuse
from .backend import Frame, Geometry, SampleInput, TriggerMode, make_backend
from .camera import Pilatus, share_control
from .control import AcqStatus, AcquisitionControl, ControlRefused, PulseCounter, SavingMode, SavingSettings
from .writer import OverwritePolicy, SavingFormat

BLUESKY_ROLES = [
    "kind=detector",
    "trigger=softTrigger",
    "prepare=prepareAcq",
    "start=startAcq",
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
    "image=last_image",
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


def _refusals(origin: str) -> contextlib.AbstractContextManager[None]:
    """A refusal of the control layer as a DevFailed a user can read."""
    return refusals(origin, ControlRefused, reason="Pilatus_Refused")


def default_saving_directory(device_name: str) -> str:
    """`$TANGO_SUITE_STATE_DIR/data/<device>` under a stack, else a folder in the temp dir."""
    root = os.environ.get("TANGO_SUITE_STATE_DIR")
    base = Path(root) / "data" if root else Path(tempfile.gettempdir()) / "tango-suite-data"
    return str(base / device_name.replace("/", "_"))


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


class LimaCCDs(Device):
    """A Pilatus hybrid pixel detector (simulated backend), with LimaCCDs attribute and command names."""

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
    detector_size = device_property(dtype=(int,), default_value=[1475, 1679], doc="width, height in pixels")
    module_size = device_property(dtype=(int,), default_value=[487, 195], doc="module width, height")
    module_gap = device_property(dtype=(int,), default_value=[7, 17], doc="gap between modules: x, y")
    threshold_time = device_property(
        dtype=float, default_value=3.0, doc="seconds a threshold change takes (SETTING_THRESHOLD)"
    )
    peak_position = device_property(dtype=float, default_value=0.0, doc="sample axis position of the peak")
    peak_width = device_property(dtype=float, default_value=1.0, doc="Gaussian sigma of the peak (axis units)")
    peak_counts = device_property(dtype=float, default_value=400.0, doc="counts in a bright spot pixel")
    noise_bank_size = device_property(dtype=int, default_value=8, doc="precomputed background realisations")
    default_directory = device_property(
        dtype=str, default_value="", doc="initial saving_directory (empty: a data folder of the stack)"
    )
    preview_binning = device_property(dtype=int, default_value=4, doc="binning of the last_image preview")
    preview_period = device_property(
        dtype=float, default_value=0.5, doc="shortest time between two last_image change events (s)"
    )
    compression_threads = device_property(
        dtype=int, default_value=2, doc="threads compressing HDF5BS frames (0: the writer thread itself)"
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
        self._publisher: EventPublisher[tuple[str, Any]] = EventPublisher("pilatus-events", self._publish)
        for name in (*EVENT_ATTRIBUTES, "last_image", "State", "Status"):
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
        self._notify("acq_status", int(self._ctl.acq_status))

    def _setup(self) -> None:
        for name in ("detector_size", "module_size", "module_gap"):
            if len(getattr(self, name)) != 2:
                raise ValueError(f"device property {name} needs two numbers (x, y), got {list(getattr(self, name))}")
        width, height = self.detector_size
        geometry = Geometry(width, height, *self.module_size, *self.module_gap)
        self._backend = make_backend(
            self.backend,
            geometry,
            peak=(self.peak_position, self.peak_width, self.peak_counts),
            noise_bank_size=self.noise_bank_size,
            threshold_time=self.threshold_time,
        )
        directory = self.default_directory or default_saving_directory(self.get_name())
        if not self.default_directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._ctl = AcquisitionControl(
            self._backend,
            self._notify,
            # A restarted server continues the numbering instead of refusing to overwrite.
            saving=SavingSettings(directory=directory).after_existing_files(),
            trigger_source=self.trigger_source,
            description=f"Pilatus {width}x{height} (simulated)",
            compression_threads=max(0, self.compression_threads),
        )
        share_control(self._ctl)  # the Pilatus camera device drives the same detector
        self._follow()

    @property
    def _control(self) -> AcquisitionControl:
        if self._ctl is None:
            refuse("Pilatus_Config", self._config_error, "Pilatus")
        return self._ctl

    def _follow(self) -> None:
        if self.sample_axis and isinstance(self._backend, SampleInput):
            follower = AttributeFollower(self.sample_axis, "position", self._sample_moved, self._sample_lost)
            self._followers.append(follower)
        if self.trigger_source:
            follower = AttributeFollower(self.trigger_source, "pso_pulse_count", self._pulse_count, self._trigger_lost)
            self._followers.append(follower)

    def delete_device(self) -> None:
        for follower in getattr(self, "_followers", []):
            follower.close()
        if getattr(self, "_ctl", None) is not None:
            share_control(None)
            self._ctl.close()
        if hasattr(self, "_publisher"):
            self._publisher.close(wait=5.0)
        super().delete_device()

    # -- followed attributes (event threads) --------------------------------------------------
    def _sample_moved(self, value: Any) -> None:
        self._sample_position = float(value)
        self._sample_error = ""
        self._backend.set_sample_position(self._sample_position)

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
            if value != AcqStatus.Running:
                self._push_preview(final=True)
        elif name == "last_image_ready" and value >= 0:
            self._push_preview(final=False)

    def _push_preview(self, *, final: bool) -> None:
        """`last_image` change events: at most every `preview_period` s, and the last frame at the end."""
        frame = self._control.latest_frame
        if frame is None or frame is self._preview_frame:
            return
        now = time.monotonic()
        if not final and now - self._preview_time < self.preview_period:
            return
        self._preview_frame, self._preview_time = frame, now
        self.push_change_event("last_image", self._preview(frame))

    def _preview(self, frame: Frame | None) -> np.ndarray:
        factor = max(1, self.preview_binning)
        if frame is None:
            g = self._control.backend.geometry
            return np.zeros((g.height // factor, g.width // factor), dtype=np.int32)
        return binned(frame.data, factor)

    def _status_text(self, status: AcqStatus) -> str:
        return {
            AcqStatus.Ready: "Ready: waiting for prepareAcq/startAcq",
            AcqStatus.Running: "Running: acquiring frames",
            AcqStatus.Configuration: "Configuration: setting the energy threshold (SETTING_THRESHOLD)",
            AcqStatus.Fault: f"Fault: {self._control.fault_error}",
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

    # -- acquisition --------------------------------------------------------------------------
    @attribute(dtype=int, access=AttrWriteType.READ_WRITE, min_value=0, doc="frames to take; 0: until stopAcq")
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
        min_value=1e-6,
        max_value=1e5,
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
        min_value=0.0,
        max_value=1e5,
        doc="time between the end of one exposure and the start of the next (internal trigger)",
    )
    def latency_time(self) -> float:
        return self._control.acquisition.latency_time

    @latency_time.write
    def latency_time(self, value: float) -> None:
        with _refusals("latency_time"):
            self._control.configure(latency_time=value)

    @attribute(
        dtype=TriggerMode,
        access=AttrWriteType.READ_WRITE,
        doc="INTERNAL_TRIGGER: startAcq takes acq_nb_frames frames; INTERNAL_TRIGGER_MULTI: one frame "
        "per softTrigger; EXTERNAL_*: one frame per pulse of trigger_source (EXTERNAL_START_STOP "
        "is not supported by a Pilatus)",
    )
    def acq_trigger_mode(self) -> TriggerMode:
        return self._control.acquisition.trigger_mode

    @acq_trigger_mode.write
    def acq_trigger_mode(self, value: int) -> None:
        with _refusals("acq_trigger_mode"):
            self._control.configure(trigger_mode=TriggerMode(value))

    @attribute(dtype=AcqStatus, doc="Ready, Running (until every frame is saved), Fault, Configuration")
    def acq_status(self) -> AcqStatus:
        return self._control.acq_status

    @attribute(dtype=str, doc="why acq_status is Fault (empty otherwise)")
    def acq_status_fault_error(self) -> str:
        return self._control.fault_error

    @attribute(dtype=int, doc="index of the newest frame read out (-1: none yet)")
    def last_image_acquired(self) -> int:
        return self._control.last_image_acquired

    @attribute(dtype=int, doc="index of the newest frame available (-1: none yet)")
    def last_image_ready(self) -> int:
        return self._control.last_image_ready

    @attribute(dtype=int, doc="index of the newest frame written and flushed to the file (-1: none yet)")
    def last_image_saved(self) -> int:
        return self._control.last_image_saved

    @attribute(dtype=bool, doc="the detector waits for its next trigger")
    def ready_for_next_image(self) -> bool:
        return self._control.ready_for_next_image

    @attribute(dtype=int, doc="trigger pulses counted during the current acquisition")
    def trigger_pulses(self) -> int:
        return self._control.trigger_pulses

    # -- saving -------------------------------------------------------------------------------
    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="absolute directory the files go to")
    def saving_directory(self) -> str:
        return self._control.saving.directory

    @saving_directory.write
    def saving_directory(self, value: str) -> None:
        with _refusals("saving_directory"):
            self._control.configure_saving(directory=value)

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="file name prefix")
    def saving_prefix(self) -> str:
        return self._control.saving.prefix

    @saving_prefix.write
    def saving_prefix(self, value: str) -> None:
        with _refusals("saving_prefix"):
            self._control.configure_saving(prefix=value)

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="file name suffix, e.g. .h5")
    def saving_suffix(self) -> str:
        return self._control.saving.suffix

    @saving_suffix.write
    def saving_suffix(self, value: str) -> None:
        with _refusals("saving_suffix"):
            self._control.configure_saving(suffix=value)

    @attribute(
        dtype=SavingFormat,
        access=AttrWriteType.READ_WRITE,
        doc="HDF5: uncompressed; HDF5BS: bitshuffle-LZ4 (HDF5 filter 32008, read with hdf5plugin)",
    )
    def saving_format(self) -> SavingFormat:
        return self._control.saving.format

    @saving_format.write
    def saving_format(self, value: int) -> None:
        with _refusals("saving_format"):
            self._control.configure_saving(format=SavingFormat(value))

    @attribute(dtype=SavingMode, access=AttrWriteType.READ_WRITE, doc="MANUAL: no files; AUTO_FRAME: save every frame")
    def saving_mode(self) -> SavingMode:
        return self._control.saving.mode

    @saving_mode.write
    def saving_mode(self, value: int) -> None:
        with _refusals("saving_mode"):
            self._control.configure_saving(mode=SavingMode(value))

    @attribute(
        dtype=int,
        access=AttrWriteType.READ_WRITE,
        min_value=0,
        doc="number in the next file name: <prefix><number %04d><suffix>; advances per file",
    )
    def saving_next_number(self) -> int:
        return self._control.saving.next_number

    @saving_next_number.write
    def saving_next_number(self, value: int) -> None:
        with _refusals("saving_next_number"):
            self._control.configure_saving(next_number=value)

    @attribute(dtype=int, access=AttrWriteType.READ_WRITE, min_value=1, doc="frames per file before the next file")
    def saving_frame_per_file(self) -> int:
        return self._control.saving.frames_per_file

    @saving_frame_per_file.write
    def saving_frame_per_file(self, value: int) -> None:
        with _refusals("saving_frame_per_file"):
            self._control.configure_saving(frames_per_file=value)

    @attribute(
        dtype=OverwritePolicy,
        access=AttrWriteType.READ_WRITE,
        doc="ABORT: prepareAcq refuses to replace an existing file; OVERWRITE: replace it",
    )
    def saving_overwrite_policy(self) -> OverwritePolicy:
        return self._control.saving.overwrite_policy

    @saving_overwrite_policy.write
    def saving_overwrite_policy(self, value: int) -> None:
        with _refusals("saving_overwrite_policy"):
            self._control.configure_saving(overwrite_policy=OverwritePolicy(value))

    @attribute(
        dtype=str,
        doc='JSON announcing each file at open and close: {"file_path", "file_type": "h5", '
        '"hinted_location": {"data": "/entry_0000/measurement/data"}, "done", "success"}',
    )
    def file_event(self) -> str:
        return self._control.file_event

    # -- image --------------------------------------------------------------------------------
    @attribute(dtype=int, unit="px", doc="frame width in pixels")
    def image_width(self) -> int:
        return self._control.backend.geometry.width

    @attribute(dtype=int, unit="px", doc="frame height in pixels")
    def image_height(self) -> int:
        return self._control.backend.geometry.height

    @attribute(dtype=str, doc="pixel type (Lima name): Bpp32S, signed 32-bit; module gaps are -1")
    def image_type(self) -> str:
        return "Bpp32S"

    @attribute(
        dtype=((np.int32,),),
        max_dim_x=4096,
        max_dim_y=4096,
        unit="counts",
        doc="the newest frame binned by preview_binning (sums, gaps as 0); change events at most every "
        "preview_period s and for the last frame; a preview, not a data path: use the file",
    )
    def last_image(self) -> np.ndarray:
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
        self._roi = tuple(int(v) for v in value)

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
    @command(doc_in="check the settings and open the first file (announced in file_event)")
    def prepareAcq(self) -> None:
        with _refusals("prepareAcq"):
            self._control.prepare()

    @command(doc_in="start the prepared acquisition (INTERNAL_TRIGGER_MULTI while running: one frame)")
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

    @command(doc_in="one frame (INTERNAL_TRIGGER_MULTI, acquisition running)")
    def softTrigger(self) -> None:
        with _refusals("softTrigger"):
            self._control.soft_trigger()


def main(args: list[str] | None = None) -> None:
    # One trigger event per pulse arrives in bursts, and up to four counter events leave per
    # frame: room beyond ZMQ's default queue of 1000 so neither side drops events in a burst.
    os.environ.setdefault("TANGO_EVENT_BUFFER_HWM", "20000")
    os.environ.setdefault("TANGO_DS_EVENT_BUFFER_HWM", "20000")
    run((LimaCCDs, Pilatus), args=args)
