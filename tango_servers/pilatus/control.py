"""The acquisition control layer (Lima's CtControl, in small): a backend, a writer and the counters.

No Tango here: `device.py` maps these attributes and methods onto LimaCCDs names and turns the
`notify(name, value)` calls into change events. Every public method either does what it says
or raises `ControlRefused` with a sentence a user can act on.

Life of an acquisition: `prepare()` checks the settings and opens the first file (announced in
`file_event` with done=False); `start()` arms the backend; frames flow backend -> counters ->
writer thread; when the backend ends (all frames, stop, abort) the writer closes the file
(announced with done=True) and only then does `acq_status` return to Ready, so Ready means
"every frame is on disk".
"""

import contextlib
import enum
import glob
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .backend import (
    SUPPORTED_TRIGGER_MODES,
    AcquisitionSettings,
    BackendBusy,
    CamState,
    Frame,
    PilatusBackend,
    ThresholdGain,
    TriggerInput,
    TriggerMode,
)
from .writer import (
    DATA_PATH,
    DetectorFile,
    FileMetadata,
    OverwritePolicy,
    SavingError,
    SavingFormat,
    WriterThread,
    open_file,
)

FILE_TYPE = "h5"
INDEX_FORMAT = "{:04d}"


class AcqStatus(enum.IntEnum):
    """LimaCCDs `acq_status` labels."""

    Ready = 0
    Running = 1
    Fault = 2
    Configuration = 3


class SavingMode(enum.IntEnum):
    """LimaCCDs `saving_mode` labels: MANUAL saves nothing, AUTO_FRAME saves every frame."""

    MANUAL = 0
    AUTO_FRAME = 1


class ControlRefused(RuntimeError):
    """The request cannot be done now; the message says why and what to do."""


@dataclass(frozen=True)
class SavingSettings:
    """Where and how frames are saved (LimaCCDs `saving_*` attributes)."""

    directory: str = "/tmp"
    prefix: str = "pilatus_"
    suffix: str = ".h5"
    format: SavingFormat = SavingFormat.HDF5BS
    mode: SavingMode = SavingMode.AUTO_FRAME
    next_number: int = 0
    frames_per_file: int = 10000
    overwrite_policy: OverwritePolicy = OverwritePolicy.ABORT

    def file_path(self, number: int) -> Path:
        return Path(self.directory) / f"{self.prefix}{INDEX_FORMAT.format(number)}{self.suffix}"

    def after_existing_files(self) -> "SavingSettings":
        """These settings with `next_number` past the files already in the directory."""
        numbers = [self.next_number - 1]
        with contextlib.suppress(OSError):
            for path in Path(self.directory).glob(f"{glob.escape(self.prefix)}*{glob.escape(self.suffix)}"):
                middle = path.name[len(self.prefix) : len(path.name) - len(self.suffix)]
                if middle.isdigit():
                    numbers.append(int(middle))
        return replace(self, next_number=max(numbers) + 1)


def file_event_json(path: Path | str, *, done: bool, success: bool) -> str:
    """The `file_event` value: the fields of BEC's file event, as JSON."""
    return json.dumps(
        {
            "file_path": str(path),
            "file_type": FILE_TYPE,
            "hinted_location": {"data": DATA_PATH},
            "done": done,
            "success": success,
        }
    )


class PulseCounter:
    """Turns a cumulative pulse counter into new pulses: frames == pulses, none invented.

    The first value after (re)subscription is only a baseline (a subscription delivers the
    current value, not a pulse). A value below the previous one means the counter was reset
    (e.g. by PsoArm) and then counted up from 0.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def reset(self) -> None:
        """Forget the baseline (after a lost connection)."""
        self._last = None

    def update(self, value: int) -> int:
        value = int(value)
        last, self._last = self._last, value
        if last is None:
            return 0
        return value - last if value >= last else value


@dataclass
class _Prepared:
    settings: AcquisitionSettings
    saving: SavingSettings | None  # None: saving off
    file_number: int | None
    nexus_file: DetectorFile | None


class AcquisitionControl:
    """LimaCCDs-style control of one detector backend, its file writer and its counters."""

    def __init__(
        self,
        backend: PilatusBackend,
        notify: Callable[[str, Any], None],
        *,
        saving: SavingSettings,
        trigger_source: str = "",
        description: str = "Pilatus (simulated)",
        max_queued_bytes: int = 128 * 2**20,
        compression_threads: int = 2,
    ):
        self.backend = backend
        self._notify = notify
        self.trigger_source = trigger_source
        self.description = description
        self._lock = threading.RLock()
        self.acquisition = AcquisitionSettings()
        self.saving = saving
        self.acq_status = AcqStatus.Ready
        self.fault_error = ""
        self.last_image_acquired = -1
        self.last_image_ready = -1
        self.last_image_saved = -1
        self.ready_for_next_image = False
        self.trigger_pulses = 0
        self.file_event = "{}"
        self.latest_frame: Frame | None = None
        self._prepared: _Prepared | None = None
        self._running: _Prepared | None = None
        self._file_number: int | None = None
        self._files_failed = False
        self.writer = WriterThread(self, max_queued_bytes=max_queued_bytes, frame_nbytes=backend.geometry.frame_nbytes)
        backend.set_listener(self)

    # -- settings -----------------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        """Change acquisition settings (nb_frames, expo_time, latency_time, trigger_mode).

        Writing the value a setting already has is always accepted (even while running).
        """
        with self._lock:
            if "trigger_mode" in changes:
                mode = TriggerMode(changes["trigger_mode"])
                if mode not in SUPPORTED_TRIGGER_MODES:
                    raise ControlRefused(
                        f"trigger mode {mode.name} is not supported by a Pilatus; use one of "
                        + ", ".join(m.name for m in sorted(SUPPORTED_TRIGGER_MODES))
                    )
                changes["trigger_mode"] = mode
            updated = replace(self.acquisition, **changes)
            if updated == self.acquisition:
                return
            self._refuse_while_running("change acquisition settings")
            self.acquisition = updated
            self._prepared_stale()

    def configure_saving(self, **changes: Any) -> None:
        """Change saving settings (the fields of SavingSettings); rewriting a value is always accepted."""
        with self._lock:
            updated = replace(self.saving, **changes)
            if updated == self.saving:
                return
            self._refuse_while_running("change saving settings")
            self._prepared_stale()
            self.saving = replace(self.saving, **changes)
            if "next_number" in changes:
                self._notify("saving_next_number", self.saving.next_number)

    def _prepared_stale(self) -> None:
        """A setting changed after prepareAcq: the prepared acquisition no longer matches it."""
        if self._prepared is not None:
            self._abandon_prepared()

    def _refuse_while_running(self, what: str) -> None:
        if self.acq_status == AcqStatus.Running:
            raise ControlRefused(f"cannot {what} while an acquisition is running: stopAcq first")

    # -- threshold ----------------------------------------------------------------------------
    def set_threshold(self, energy_kev: float | None = None, gain: ThresholdGain | None = None) -> None:
        """Start a threshold change; acq_status is Configuration until the detector is done."""
        with self._lock:
            self._refuse_while_running("change the energy threshold")
            energy = self.backend.energy_threshold if energy_kev is None else energy_kev
            gain = self.backend.threshold_gain if gain is None else ThresholdGain(gain)
            try:
                self.backend.set_threshold(energy, gain)
            except BackendBusy as exc:
                raise ControlRefused(str(exc)) from exc
            self._set_status(AcqStatus.Configuration)

    def cam_state_changed(self, state: CamState) -> None:
        with self._lock:
            if state == CamState.STANDBY and self.acq_status == AcqStatus.Configuration:
                self._set_status(AcqStatus.Ready)

    def _refuse_while_configuring(self) -> None:
        left = self.backend.threshold_time_left()
        if self.acq_status == AcqStatus.Configuration or left > 0:
            raise ControlRefused(
                f"the detector is setting its energy threshold (about {left:.1f} s left): "
                "retry when acq_status is Ready"
            )

    # -- acquisition --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the settings and open the first file; the next `start()` uses them."""
        with self._lock:
            self._refuse_while_running("prepare a new acquisition")
            self._refuse_while_configuring()
            if self._prepared is not None:
                self._abandon_prepared()
            settings = self.acquisition
            saving = self.saving if self.saving.mode == SavingMode.AUTO_FRAME else None
            prepared = _Prepared(settings, saving, None, None)
            if saving is not None:
                self._check_directory(saving, settings)
                number = saving.next_number
                try:
                    prepared.nexus_file = self._open_file(saving, settings, number)
                except SavingError as exc:
                    raise ControlRefused(str(exc)) from exc
                prepared.file_number = number
                self.saving = replace(saving, next_number=number + 1)
                self._notify("saving_next_number", self.saving.next_number)
            self._prepared = prepared
            self.fault_error = ""
            self._files_failed = False
            for name in ("last_image_acquired", "last_image_ready", "last_image_saved"):
                setattr(self, name, -1)
                self._notify(name, -1)
            self.trigger_pulses = 0
            self._set_status(AcqStatus.Ready)
            if prepared.nexus_file is not None:
                self._announce(prepared.nexus_file.path, done=False, success=False)

    def _check_directory(self, saving: SavingSettings, settings: AcquisitionSettings) -> None:
        directory = Path(saving.directory)
        if not saving.directory or not directory.is_absolute():
            raise ControlRefused(f"saving_directory '{saving.directory}' must be an absolute path")
        if not directory.exists():
            raise ControlRefused(f"saving_directory {directory} does not exist: create it or choose another")
        if not directory.is_dir():
            raise ControlRefused(f"saving_directory {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ControlRefused(f"saving_directory {directory} is not writable by the detector server")
        frames = settings.nb_frames or 1  # the whole acquisition, whatever the number of files
        ratio = 0.25 if saving.format == SavingFormat.HDF5BS else 1.0
        needed = int(frames * self.backend.geometry.frame_nbytes * ratio)
        free = shutil.disk_usage(directory).free
        if free < needed:
            raise ControlRefused(
                f"only {free / 2**20:.0f} MiB free in {directory}, about {needed / 2**20:.0f} MiB needed "
                f"for {frames} frames: free space or choose another saving_directory"
            )

    def _open_file(self, saving: SavingSettings, settings: AcquisitionSettings, number: int) -> DetectorFile:
        metadata = FileMetadata(
            expo_time=settings.expo_time,
            latency_time=settings.latency_time,
            trigger_mode=settings.trigger_mode.name,
            trigger_source=self.trigger_source if settings.trigger_mode.is_external else "",
            frames_requested=settings.nb_frames,
            energy_threshold=self.backend.energy_threshold,
            threshold_gain=self.backend.threshold_gain.name,
            description=self.description,
        )
        return open_file(
            saving.file_path(number),
            self.backend.geometry,
            saving.format,
            metadata,
            overwrite=saving.overwrite_policy == OverwritePolicy.OVERWRITE,
        )

    def _abandon_prepared(self) -> None:
        """Drop a prepared acquisition that never started: its empty file is removed."""
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared.nexus_file is None:
            return
        prepared.nexus_file.close()
        with contextlib.suppress(OSError):
            prepared.nexus_file.path.unlink()
        self.saving = replace(self.saving, next_number=prepared.file_number)
        self._notify("saving_next_number", self.saving.next_number)
        self._announce(prepared.nexus_file.path, done=True, success=False)

    def start(self) -> None:
        """Start the prepared acquisition (in INTERNAL_TRIGGER_MULTI, while running: one more frame)."""
        with self._lock:
            running = self._running
            if self.acq_status == AcqStatus.Running:
                if running and running.settings.trigger_mode == TriggerMode.INTERNAL_TRIGGER_MULTI:
                    self.soft_trigger()
                    return
                raise ControlRefused("an acquisition is already running: stopAcq first")
            self._refuse_while_configuring()
            prepared = self._prepared
            if prepared is None:
                raise ControlRefused("no acquisition is prepared: call prepareAcq before startAcq")
            if prepared.nexus_file is not None:
                self.writer.adopt(prepared.nexus_file)
            self._prepared = None
            self._running = prepared
            self._file_number = prepared.file_number
            self._set_status(AcqStatus.Running)
            try:
                self.backend.start(prepared.settings)
            except BackendBusy as exc:
                self._running = None
                self.writer.close()
                self._set_status(AcqStatus.Ready)
                raise ControlRefused(str(exc)) from exc
            self._set_ready_for_next_image(prepared.settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER)

    def soft_trigger(self) -> None:
        with self._lock:
            try:
                self.backend.soft_trigger()
            except BackendBusy as exc:
                raise ControlRefused(str(exc)) from exc
            self._set_ready_for_next_image(False)

    def stop(self) -> None:
        """End the acquisition after the current frame; the file is closed with what was taken."""
        with self._lock:
            if self._running is not None:
                self.backend.stop()
            elif self._prepared is not None:
                self._abandon_prepared()

    def abort(self) -> None:
        """End the acquisition now; frames already taken are still written and the file closed."""
        with self._lock:
            if self._running is not None:
                self.backend.abort()
            elif self._prepared is not None:
                self._abandon_prepared()

    def external_pulses(self, count: int) -> None:
        """Trigger pulses from the configured trigger source (counted while armed)."""
        if count <= 0:
            return
        with self._lock:
            running = self._running
            if running is None or not running.settings.trigger_mode.is_external:
                return
            self.trigger_pulses += count
        if isinstance(self.backend, TriggerInput):
            self.backend.external_pulses(count)

    def close(self) -> None:
        """Stop everything and close files (server shutdown)."""
        with contextlib.suppress(Exception):
            self.abort()
        self.backend.close()
        self.writer.shutdown()

    # -- backend reports (backend worker thread) ----------------------------------------------
    def frame_ready(self, frame: Frame) -> None:
        with self._lock:
            running = self._running
            self.latest_frame = frame
            self.last_image_acquired = self.last_image_ready = frame.index
            self._notify("last_image_acquired", frame.index)
            self._notify("last_image_ready", frame.index)
            if running is not None and running.settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER:
                more = running.settings.nb_frames == 0 or frame.index + 1 < running.settings.nb_frames
                self._set_ready_for_next_image(more)
            saving = running.saving if running is not None else None
            roll_over = (
                saving is not None
                and not self._files_failed
                and frame.index > 0
                and frame.index % saving.frames_per_file == 0
            )
            if roll_over:
                number = self.saving.next_number
                self.saving = replace(self.saving, next_number=number + 1)
                self._notify("saving_next_number", self.saving.next_number)
                self._file_number = number
        if roll_over:
            self.writer.close()
            self.writer.open(saving.file_path(number), lambda: self._open_file(saving, running.settings, number))
        if saving is not None:
            self.writer.submit_frame(frame, saving.format)  # blocks while the disk is behind

    def acquisition_ended(self, frames: int, error: str | None) -> None:
        with self._lock:
            running = self._running
            self._set_ready_for_next_image(False)
            if error:
                self._fault(error)
        if running is not None and running.saving is not None:
            self.writer.close()
            self.writer.call(self._finish)
        else:
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._running = None
            if self.acq_status == AcqStatus.Running:
                self._set_status(AcqStatus.Ready)

    # -- writer reports (writer thread) -------------------------------------------------------
    def file_opened(self, path: Path) -> None:
        with self._lock:
            self._announce(path, done=False, success=False)

    def frame_saved(self, index: int) -> None:
        with self._lock:
            self.last_image_saved = index
            self._notify("last_image_saved", index)

    def file_closed(self, path: Path, frames: int, error: str | None) -> None:
        with self._lock:
            self._announce(path, done=True, success=error is None)
            if error:
                self._files_failed = True
                self._fault(error)
                if self._running is not None:
                    self.backend.abort()

    # -- helpers (caller holds the lock) ------------------------------------------------------
    def _announce(self, path: Path, *, done: bool, success: bool) -> None:
        self.file_event = file_event_json(path, done=done, success=success)
        self._notify("file_event", self.file_event)

    def _fault(self, reason: str) -> None:
        self.fault_error = reason
        self._notify("acq_status_fault_error", reason)
        self._set_status(AcqStatus.Fault)

    def _set_status(self, status: AcqStatus) -> None:
        if status != self.acq_status:
            self.acq_status = status
            self._notify("acq_status", int(status))

    def _set_ready_for_next_image(self, ready: bool) -> None:
        if ready != self.ready_for_next_image:
            self.ready_for_next_image = ready
            self._notify("ready_for_next_image", ready)
