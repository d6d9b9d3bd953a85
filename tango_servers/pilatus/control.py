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
import functools
import glob
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..common.data_roots import DataRoots, OutsideDataRoots
from .accumulation import (
    AccumulationSplit,
    Accumulator,
    hardware_settings,
    split_exposure,
    triggers_per_frame,
)
from .backend import (
    AcquisitionSettings,
    BackendBusy,
    CamState,
    Frame,
    Geometry,
    PilatusBackend,
    ThresholdGain,
    TriggerInput,
    TriggerMode,
)
from .frames import FrameBuffer, FrameUnavailable
from .image import BadImageSetting, ImageGeometry, ImageOps
from .paths import MAX_FILE_NUMBER, check_index_format, check_name_part, format_index, replaceable
from .values import BadValue, choose, lima_choice
from .writer import (
    DATA_PATH,
    DetectorFile,
    FileMetadata,
    OpenMode,
    SavingError,
    SavingFormat,
    WriterThread,
    open_file,
)

MAX_BUFFER_FRAMES = 100_000
FILE_TYPES = {SavingFormat.HDF5: "h5", SavingFormat.HDF5BS: "h5", SavingFormat.CBF: "cbf"}
FORMAT_SUFFIXES = {SavingFormat.HDF5: ".h5", SavingFormat.HDF5BS: ".h5", SavingFormat.CBF: ".cbf"}  # setFormatSuffix


class AcqStatus(enum.Enum):
    """LimaCCDs `acq_status` values (DevString)."""

    Ready = "Ready"
    Running = "Running"
    Fault = "Fault"
    Configuration = "Configuration"


class ControlRefused(RuntimeError):
    """The request cannot be done now; the message says why and what to do."""


@dataclass(frozen=True)
class SavingSettings:
    """Where and how frames are saved (LimaCCDs `saving_*` attributes, Lima's CtSaving parameters).

    `mode` and `overwrite_policy` are Lima's strings; file names are prefix + index (printf
    `index_format`) + suffix, as CtSaving builds them.
    """

    directory: str = "/tmp"
    prefix: str = "pilatus_"
    suffix: str = ".h5"
    index_format: str = "%04d"
    format: SavingFormat = SavingFormat.HDF5BS
    mode: str = "AUTO_FRAME"
    next_number: int = 0
    frames_per_file: int = 10000
    overwrite_policy: str = "ABORT"
    managed_mode: str = "SOFTWARE"
    common_header: tuple[str, ...] = field(default_factory=tuple)

    def file_path(self, number: int) -> Path:
        return Path(self.directory) / f"{self.prefix}{format_index(self.index_format, number)}{self.suffix}"

    def last_existing_number(self) -> int:
        """The highest number of a file named like ours in the directory (-1: none), as LimaCCDs
        finds it when saving_prefix is written under ABORT; numbers past MAX_FILE_NUMBER are ignored."""
        last = -1
        with contextlib.suppress(OSError):
            for path in Path(self.directory).glob(f"{glob.escape(self.prefix)}*{glob.escape(self.suffix)}"):
                middle = path.name[len(self.prefix) : len(path.name) - len(self.suffix)]
                if middle.isdigit() and int(middle) <= MAX_FILE_NUMBER:
                    last = max(last, int(middle))
        return last

    def after_existing_files(self) -> "SavingSettings":
        """These settings with `next_number` past the files already in the directory."""
        return replace(self, next_number=max(self.next_number, self.last_existing_number() + 1))

    @property
    def frames_in_a_file(self) -> int:
        """`frames_per_file` (1 for CBF, as CtSaving requires); every frame of the acquisition
        under MULTISET (CtSaving keeps one file open for the whole acquisition)."""
        if self.overwrite_policy == "MULTISET":
            return 2**31 - 1
        return self.frames_per_file

    @property
    def advances_number(self) -> bool:
        """Whether a closed file moves saving_next_number on: not under APPEND and MULTISET, which
        add to the same files acquisition after acquisition (CtSaving::SaveContainer::close)."""
        return self.overwrite_policy not in ("APPEND", "MULTISET")

    def header(self) -> tuple[tuple[str, str], ...]:
        """`common_header` as (key, value) pairs, split at the first '=' as LimaCCDs does."""
        return tuple((key, value) for key, _, value in (entry.partition("=") for entry in self.common_header))

    def files_needed(self, nb_frames: int) -> int:
        """Files an acquisition of `nb_frames` writes (0 frames, until stopped: at least one)."""
        return max(1, -(-max(1, nb_frames) // self.frames_in_a_file))


SAVING_LIMITS = {"frames_per_file": (1, 2**31 - 1), "next_number": (-1, MAX_FILE_NUMBER)}


def file_event_json(
    path: Path | str,
    *,
    done: bool,
    success: bool,
    saving_format: SavingFormat = SavingFormat.HDF5BS,
    data_path: str = DATA_PATH,
) -> str:
    """The `file_event` value: the fields of BEC's file event, as JSON; `data_path` is where the
    file's frames are (MULTISET: its newest entry; a CBF has no inner path)."""
    return json.dumps(
        {
            "file_path": str(path),
            "file_type": FILE_TYPES[SavingFormat(saving_format)],
            "hinted_location": {"data": data_path} if saving_format != SavingFormat.CBF else {},
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
    saving: SavingSettings | None  # None: not saving every frame (MANUAL)
    file_number: int | None
    nexus_file: DetectorFile | None


class AcquisitionControl:
    """LimaCCDs-style control of one detector backend, its file writer and its counters.

    Files are created only inside `data_roots`. `saving_next_number` advances when a file is
    closed (CtSaving), so read right after startAcq it is the number of the first file.
    """

    def __init__(
        self,
        backend: PilatusBackend,
        notify: Callable[[str, Any], None],
        *,
        saving: SavingSettings,
        data_roots: DataRoots,
        trigger_source: str = "",
        description: str = "Pilatus (simulated)",
        max_queued_bytes: int = 128 * 2**20,
        compression_threads: int = 2,
        buffer_bytes: int = 128 * 2**20,
    ):
        self.backend = backend
        self._notify = notify
        self.trigger_source = trigger_source
        self.description = description
        self.data_roots = data_roots
        self._lock = threading.RLock()
        self._manual_lock = threading.Lock()
        self.acquisition = AcquisitionSettings()
        self.image = ImageOps((backend.geometry.width, backend.geometry.height))
        self._accumulator: Accumulator | None = None
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
        self._buffer_bytes = buffer_bytes
        self.buffer = FrameBuffer(self._frames_in(buffer_bytes))
        self._prepared: _Prepared | None = None
        self._running: _Prepared | None = None
        self._file_number: int | None = None
        self._status_changed = threading.Condition(self._lock)
        self._file_numbers: dict[Path, int] = {}
        self._file_kinds: dict[Path, tuple[SavingFormat, str]] = {}  # file_event's file_type, data path
        self._created: dict[Path, tuple[int, int]] = {}  # files this server made: (st_dev, st_ino)
        self._files_failed = False
        self._reset_pending = False
        self._save_lock = threading.Lock()
        self._held: dict[int, Frame] = {}  # frames not yet handed to the writer, by index
        self._next_save = 0
        self._frame_headers: dict[int, dict[str, str]] = {}
        geometry = backend.geometry
        self.beam_center = (geometry.width / 2, geometry.height / 2)  # pixels (NXmx beam_center_x, _y)
        self.detector_distance = 0.2  # m
        self._ending = False  # the detector ended; frames wait for their headers (AUTO_HEADER)
        self.writer = WriterThread(
            self,
            max_queued_bytes=max_queued_bytes,
            frame_nbytes=self.image_geometry.frame_nbytes,
            compression_threads=compression_threads,
        )
        backend.set_listener(self)

    # -- settings -----------------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        """Change acquisition settings (the fields of AcquisitionSettings).

        `trigger_mode`, `acq_mode` and `acc_time_mode` are LimaCCDs strings (any case). Writing the
        value a setting already has is always accepted (even while running).
        """
        with self._lock:
            if "trigger_mode" in changes:
                changes["trigger_mode"] = TriggerMode[self._choice("acq_trigger_mode", changes["trigger_mode"])]
            for name in ("acq_mode", "acc_time_mode"):
                if name in changes:
                    changes[name] = self._choice(name, changes[name])
            updated = replace(self.acquisition, **changes)
            if updated == self.acquisition:
                return
            self._refuse_while_running("change acquisition settings")
            self.acquisition = updated
            self._prepared_stale()

    @property
    def accumulation(self) -> AccumulationSplit | None:
        """How ACCUMULATION splits each frame's exposure (None in SINGLE)."""
        return split_exposure(self.acquisition)

    def configure_image(
        self,
        *,
        bin: tuple[int, int] | None = None,
        bin_mode: str | None = None,
        flip: tuple[bool, bool] | None = None,
        rotation: str | None = None,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        """Change Lima's image operations (image_bin, image_bin_mode, image_flip, image_rotation,
        image_roi); they apply from the next prepareAcq, and are refused while running."""
        with self._lock:
            try:
                image = self.image
                if bin is not None:
                    image = image.with_bin(bin)
                if bin_mode is not None:
                    image = image.with_bin_mode(self._choice("image_bin_mode", bin_mode))
                if flip is not None:
                    image = image.with_flip(flip)
                if rotation is not None:
                    image = image.with_rotation(self._choice("image_rotation", rotation))
                if roi is not None:
                    image = image.with_roi(roi)
            except BadImageSetting as exc:
                raise ControlRefused(str(exc)) from exc
            if image == self.image:
                return
            self._refuse_while_running("change the image operations")
            self.image = image
            self._prepared_stale()
            self.buffer.resize(self._frames_in(self._buffer_bytes))
            self.writer.set_frame_nbytes(self.image_geometry.frame_nbytes)

    def _frames_in(self, nbytes: int) -> int:
        """How many frames as the image operations make them fit in `nbytes` (1 .. MAX_BUFFER_FRAMES)."""
        return max(1, min(MAX_BUFFER_FRAMES, nbytes // self.image_geometry.frame_nbytes))

    @property
    def image_geometry(self) -> Geometry:
        """The geometry of the frames clients get and files hold (after the image operations)."""
        return ImageGeometry.of(self.backend.geometry, self.image)

    def configure_saving(self, **changes: Any) -> None:
        """Change saving settings (the fields of SavingSettings, strings as LimaCCDs takes them).

        Every value is checked here, so a refused write changes nothing; rewriting a value is
        always accepted.
        """
        with self._lock:
            changes = {name: self._checked_saving(name, value) for name, value in changes.items()}
            if "format" in changes:  # LimaCCDs' write_saving_format: CtSaving::setFormatSuffix
                changes["suffix"] = FORMAT_SUFFIXES[changes["format"]]
            updated = replace(self.saving, **changes)
            if updated == self.saving:
                return
            if updated.format == SavingFormat.CBF and updated.frames_per_file > 1:
                raise ControlRefused(
                    "CBF file format does not support multi frame per file (CtSaving): saving_format CBF "
                    f"takes saving_frame_per_file 1, not {updated.frames_per_file}; HDF5 and HDF5BS take any number"
                )
            self._refuse_while_running("change saving settings")
            self._prepared_stale()
            self.saving = updated
            if "next_number" in changes:
                self._notify("saving_next_number", self.saving.next_number)

    def set_prefix(self, prefix: str) -> None:
        """Write saving_prefix as LimaCCDs does: under ABORT the next number goes past the last
        existing file of that prefix, otherwise it restarts from 0."""
        with self._lock:
            candidate = replace(self.saving, prefix=check_name_part("saving_prefix", prefix))
            last = candidate.last_existing_number() if candidate.overwrite_policy == "ABORT" else -1
            self.configure_saving(prefix=prefix, next_number=last + 1)

    def _checked_saving(self, name: str, value: Any) -> Any:
        if name == "directory":
            self.data_roots.check(value, "saving_directory")
        elif name in ("prefix", "suffix"):
            check_name_part(f"saving_{name}", value)
        elif name == "index_format":
            check_index_format(value)
        elif name == "format":
            return SavingFormat[choose("saving_format", value, [f.name for f in SavingFormat])]
        elif name == "mode":
            return self._choice("saving_mode", value)
        elif name == "overwrite_policy":
            return self._choice("saving_overwrite_policy", value)
        elif name == "managed_mode":
            return self._choice("saving_managed_mode", value)
        elif name == "common_header":
            return tuple(value)
        elif name in SAVING_LIMITS:
            low, high = SAVING_LIMITS[name]
            if not low <= int(value) <= high:
                raise ControlRefused(f"saving_{name.replace('frames', 'frame')} {value} is outside {low} .. {high}")
            return int(value)
        return value

    @staticmethod
    def _choice(name: str, value: Any) -> str:
        try:
            return lima_choice(name, value)
        except BadValue as exc:
            raise ControlRefused(str(exc)) from exc

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
            saving = self.saving if self.saving.mode != "MANUAL" else None
            prepared = _Prepared(settings, saving, None, None)
            if saving is not None:
                self._check_directory(saving, settings)
                number = max(0, saving.next_number)
                self._check_files(saving, number, saving.files_needed(settings.nb_frames))
                prepared.nexus_file = self._open_file(saving, settings, number)
                prepared.file_number = number
            self._prepared = prepared
            self.fault_error = ""
            self._files_failed = False
            self.buffer.clear()
            self.latest_frame = None
            split = split_exposure(settings)
            self._accumulator = Accumulator(split.nb_frames) if split else None
            self._held.clear()
            self._next_save = 0
            for name in ("last_image_acquired", "last_image_ready", "last_image_saved"):
                setattr(self, name, -1)
                self._notify(name, -1)
            self.trigger_pulses = 0
            self._set_status(AcqStatus.Ready)
            if prepared.nexus_file is not None:
                self._announce(prepared.nexus_file.path, done=False, success=False)

    def _check_directory(self, saving: SavingSettings, settings: AcquisitionSettings) -> None:
        directory = self._directory(saving)
        if not directory.exists():
            raise ControlRefused(f"saving_directory {saving.directory} does not exist: create it or choose another")
        if not directory.is_dir():
            raise ControlRefused(f"saving_directory {saving.directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ControlRefused(f"saving_directory {directory} is not writable by the detector server")
        frames = settings.nb_frames or 1  # the whole acquisition, whatever the number of files
        ratio = 0.25 if saving.format == SavingFormat.HDF5BS else 1.0
        needed = int(frames * self.image_geometry.frame_nbytes * ratio)  # the frames as saved
        free = shutil.disk_usage(directory).free
        if free < needed:
            raise ControlRefused(
                f"only {free / 2**20:.0f} MiB free in {directory}, about {needed / 2**20:.0f} MiB needed "
                f"for {frames} frames: free space or choose another saving_directory"
            )

    def _directory(self, saving: SavingSettings) -> Path:
        try:
            return self.data_roots.check(saving.directory, "saving_directory")
        except OutsideDataRoots as exc:
            raise ControlRefused(str(exc)) from exc

    def _check_files(self, saving: SavingSettings, first: int, count: int) -> None:
        """Refuse before any file is touched: numbers in range, and (ABORT) none of the files exists."""
        last = first + count - 1
        if last > MAX_FILE_NUMBER:
            raise ControlRefused(
                f"saving_next_number {saving.next_number}: the acquisition needs file numbers up to {last}, "
                f"past the largest, {MAX_FILE_NUMBER}: set saving_next_number lower or change saving_prefix"
            )
        for number in range(first, last + 1):
            self._check_target(saving, saving.file_path(number))

    def _check_target(self, saving: SavingSettings, path: Path) -> None:
        if not os.path.lexists(path):
            return
        if saving.overwrite_policy == "ABORT":
            raise ControlRefused(
                f"{path} already exists and saving_overwrite_policy is ABORT: "
                "change saving_next_number or saving_prefix, or set the policy to OVERWRITE"
            )
        if not replaceable(path):
            verb = "replaces" if saving.overwrite_policy == "OVERWRITE" else "adds to"
            raise ControlRefused(
                f"{path} exists and is not a plain file with a single name (a link or a directory): "
                f"saving_overwrite_policy {saving.overwrite_policy} {verb} only plain files; "
                "remove it or change saving_prefix"
            )

    def _open_file(self, saving: SavingSettings, settings: AcquisitionSettings, number: int) -> DetectorFile:
        """Create file `number` (replacing a plain file of that name under OVERWRITE).

        The name is unlinked first and the file created exclusively, so an existing link is never
        followed and another name of the same inode never truncated.
        """
        if number > MAX_FILE_NUMBER:
            raise ControlRefused(f"file number {number} is past the largest, {MAX_FILE_NUMBER}: change saving_prefix")
        self._directory(saving)
        path = saving.file_path(number)
        self._check_target(saving, path)
        mode = OpenMode.for_policy(saving.overwrite_policy)
        if mode == OpenMode.CREATE and os.path.lexists(path):
            path.unlink()
        existed = os.path.lexists(path)
        metadata = FileMetadata(
            expo_time=settings.expo_time,
            latency_time=settings.latency_time,
            trigger_mode=settings.trigger_mode.name,
            trigger_source=self.trigger_source if settings.trigger_mode.is_external else "",
            frames_requested=settings.nb_frames,
            energy_threshold=self.backend.energy_threshold,
            threshold_gain=self.backend.threshold_gain.name,
            description=self.description,
            detector_distance=self.detector_distance,
            beam_center=self.beam_center,
            header=saving.header(),
            image=self.image,
            acq_mode=settings.acq_mode,
            acc_time_mode=settings.acc_time_mode,
            acc_max_expo_time=settings.acc_max_expo_time,
            accumulation=split_exposure(settings),
        )
        try:
            detector_file = open_file(path, self.image_geometry, saving.format, metadata, mode=mode)
        except SavingError as exc:
            raise ControlRefused(str(exc)) from exc
        info = path.stat()
        with self._lock:
            if not existed:  # a file added to (APPEND, MULTISET) is never removed
                self._created[path] = (info.st_dev, info.st_ino)
            if saving.advances_number:
                self._file_numbers[path] = number
            self._file_kinds[path] = (saving.format, detector_file.data_path)
        return detector_file

    def _remove_created(self, path: Path) -> None:
        """Delete `path` only if it is still the file this server created."""
        identity = self._created.pop(path, None)
        with contextlib.suppress(OSError):
            info = path.lstat()
            if identity == (info.st_dev, info.st_ino):
                path.unlink()

    def _abandon_prepared(self) -> None:
        """Drop a prepared acquisition that never started: its empty file is removed."""
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared.nexus_file is None:
            return
        prepared.nexus_file.close()
        self._file_numbers.pop(prepared.nexus_file.path, None)
        self._remove_created(prepared.nexus_file.path)
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
                self.backend.start(hardware_settings(prepared.settings, split_exposure(prepared.settings)))
            except BackendBusy as exc:
                self._running = None
                self.writer.close()
                self._set_status(AcqStatus.Ready)
                raise ControlRefused(str(exc)) from exc
            if prepared.settings.trigger_mode == TriggerMode.INTERNAL_TRIGGER_MULTI:
                # Lima's IntTrigMult: every startAcq takes one frame, the first one included.
                self.soft_trigger()
            else:
                self._set_ready_for_next_image(prepared.settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER)

    def soft_trigger(self) -> None:
        """One frame in INTERNAL_TRIGGER_MULTI (in ACCUMULATION: all its sub-frames)."""
        with self._lock:
            settings = self._running.settings if self._running else self.acquisition
            try:
                for _ in range(triggers_per_frame(settings, split_exposure(settings))):
                    self.backend.soft_trigger()
            except BackendBusy as exc:
                raise ControlRefused(str(exc)) from exc
            self._set_ready_for_next_image(False)

    def _drop_waiting_frames(self) -> bool:
        """After the detector ended in AUTO_HEADER: give up the frames still without a header."""
        with self._save_lock:
            if not self._ending:
                return False
            self._close_acquisition()
            return True

    def stop(self) -> None:
        """End the acquisition after the current frame; the file is closed with what was taken."""
        if self._drop_waiting_frames():
            return
        with self._lock:
            if self._running is not None:
                self.backend.stop()
            elif self._prepared is not None:
                self._abandon_prepared()

    def abort(self) -> None:
        """End the acquisition now; frames already taken are still written and the file closed."""
        if self._drop_waiting_frames():
            return
        with self._lock:
            if self._running is not None:
                self.backend.abort()
            elif self._prepared is not None:
                self._abandon_prepared()

    def wait_until_not_running(self, timeout: float) -> bool:
        """Wait up to `timeout` s for acq_status to leave Running (LimaCCDs' abortAcq returns Ready)."""
        with self._lock:
            return self._status_changed.wait_for(lambda: self.acq_status != AcqStatus.Running, timeout)

    def reset(self) -> None:
        """Lima's reset: abort what runs and leave Fault; acq_status is Ready once idle."""
        self.abort()
        with self._lock:
            self.fault_error = ""
            self._notify("acq_status_fault_error", "")
            if self._running is None:
                self._set_status(AcqStatus.Ready)
            else:
                self._reset_pending = True

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

    # -- frames on request (LimaCCDs readImage, readImageSeq, writeImage) ---------------------
    def frames(self, start: int, end: int) -> list[Frame]:
        """Frames start .. end-1 of the current acquisition, from the buffer."""
        try:
            return self.buffer.frames(start, end)
        except FrameUnavailable as exc:
            raise ControlRefused(str(exc)) from exc

    def write_image(self, index: int) -> Path:
        """MANUAL saving (LimaCCDs writeImage): frame `index` (-1: the newest) into the next file."""
        with self._manual_lock:
            with self._lock:
                saving = self.saving
                if saving.mode != "MANUAL":
                    raise ControlRefused(
                        f"writeImage saves frames in saving_mode MANUAL; saving_mode is {saving.mode}, "
                        "which saves frames already"
                    )
                frame = self.frames(index, index + 1)[0] if index >= 0 else self.frames(-1, 0)[0]
                self._check_directory(saving, replace(self.acquisition, nb_frames=1))
                number = max(0, saving.next_number)
                self._check_files(saving, number, 1)
                nexus_file = self._open_file(saving, replace(self.acquisition, nb_frames=1), number)
                self._announce(nexus_file.path, done=False, success=False)
            error = None
            with self._lock:
                header = self._frame_headers.pop(frame.index, None)
            try:
                nexus_file.write(frame, header=header)
            except SavingError as exc:
                error = str(exc)
            finally:
                nexus_file.close()
            with self._lock:
                self._announce(nexus_file.path, done=True, success=error is None)
                self._file_numbers.pop(nexus_file.path, None)
                self._created.pop(nexus_file.path, None)
                if error:
                    raise ControlRefused(error)
                if saving.advances_number:
                    self._advance_next_number(number + 1)
                self.last_image_saved = max(self.last_image_saved, frame.index)
                self._notify("last_image_saved", self.last_image_saved)
            return nexus_file.path

    # -- backend reports (backend worker thread) ----------------------------------------------
    def _processed(self, frame: Frame) -> Frame | None:
        """The detector's frame through the image operations and accumulation (Lima's order);
        None while an accumulated frame is still incomplete."""
        frame = replace(frame, data=self.image.apply(frame.data))
        return self._accumulator.add(frame) if self._accumulator is not None else frame

    def frame_ready(self, frame: Frame) -> None:
        processed = self._processed(frame)
        if processed is None:
            return
        frame = processed
        with self._lock:
            running = self._running
            self.latest_frame = frame
            self.buffer.add(frame)
            self.last_image_acquired = self.last_image_ready = frame.index
            self._notify("last_image_acquired", frame.index)
            self._notify("last_image_ready", frame.index)
            if running is not None and running.settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER:
                more = running.settings.nb_frames == 0 or frame.index + 1 < running.settings.nb_frames
                self._set_ready_for_next_image(more)
            saving = running.saving if running is not None else None
            if saving is not None:
                self._held[frame.index] = frame
                if saving.mode == "AUTO_HEADER" and len(self._held) > self.buffer.capacity:
                    self._fault(
                        f"saving_mode AUTO_HEADER: {len(self._held)} frames wait for their header "
                        "(setImageHeader); frames are saved once their header is set"
                    )
                    self._held.clear()
                    self.backend.abort()
        if running is not None and saving is not None:
            self._save_ready(running, saving)

    def _save_ready(self, running: _Prepared, saving: SavingSettings) -> None:
        """Hand the frames that may be saved now to the writer, in order: every frame in
        AUTO_FRAME, a frame once its header is set in AUTO_HEADER (CtSaving)."""
        with self._save_lock:
            with self._lock:
                ready = []
                while self._next_save in self._held and (
                    saving.mode != "AUTO_HEADER" or self._next_save in self._frame_headers
                ):
                    # CtSaving takes a frame's header as it saves the frame.
                    header = self._frame_headers.pop(self._next_save, None)
                    ready.append((self._held.pop(self._next_save), header))
                    self._next_save += 1
            for frame, header in ready:
                with self._lock:
                    roll_over = (
                        not self._files_failed and frame.index > 0 and frame.index % saving.frames_in_a_file == 0
                    )
                    if roll_over:
                        number = (self._file_number or 0) + 1
                        self._file_number = number
                if roll_over:
                    self.writer.close()
                    self.writer.open(
                        saving.file_path(number), functools.partial(self._open_file, saving, running.settings, number)
                    )
                self.writer.submit_frame(frame, saving.format, header)  # blocks while the disk is behind
            if self._ending and not self._held:
                self._close_acquisition()

    def set_frame_headers(self, headers: dict[int, dict[str, str]]) -> None:
        """Headers of frames by index (LimaCCDs setImageHeader); in AUTO_HEADER they release the frames."""
        with self._lock:
            self._frame_headers.update(headers)
            running = self._running
        if running is not None and running.saving is not None and running.saving.mode == "AUTO_HEADER":
            self._save_ready(running, running.saving)

    def reset_frame_headers(self) -> None:
        """LimaCCDs resetFrameHeaders (CtSaving::removeAllFrameHeaders): forget every frame's header."""
        with self._lock:
            self._frame_headers.clear()

    def reset_common_header(self) -> None:
        """LimaCCDs resetCommonHeader: files from now on get no common header."""
        self.configure_saving(common_header=())

    def set_detector_position(
        self, *, beam_center: tuple[float, float] | None = None, distance: float | None = None
    ) -> None:
        """Where the beam meets the detector (pixels) and how far the detector is from the sample
        (m), for the NXmx geometry and CBF header of the files opened from now on."""
        with self._lock:
            if distance is not None:
                if not 0 < distance < float("inf"):
                    raise ControlRefused(f"detector_distance {distance} m must be a positive distance")
                self.detector_distance = float(distance)
            if beam_center is not None:
                if not all(abs(v) < float("inf") for v in beam_center):
                    raise ControlRefused(f"beam centre {beam_center} must be finite pixel coordinates")
                self.beam_center = (float(beam_center[0]), float(beam_center[1]))

    def acquisition_ended(self, frames: int, error: str | None) -> None:
        with self._lock:
            running = self._running
            self._set_ready_for_next_image(False)
            if error:
                self._fault(error)
        if running is not None and running.saving is not None:
            with self._save_lock:  # after the frames being handed over
                with self._lock:
                    # AUTO_HEADER: Running until the last frame's header is set (or stopAcq, abortAcq).
                    self._ending = bool(self._held) and running.saving.mode == "AUTO_HEADER"
                if not self._ending:
                    self._close_acquisition()
        else:
            self._finish()

    def _close_acquisition(self) -> None:
        """The last file closes after the frames handed over; then acq_status returns (caller holds _save_lock)."""
        with self._lock:
            self._held.clear()
            self._ending = False
        self.writer.close()
        self.writer.call(self._finish)

    def _finish(self) -> None:
        with self._lock:
            self._running = None
            if self.acq_status == AcqStatus.Running or self._reset_pending:
                self._reset_pending = False
                self._set_status(AcqStatus.Ready)

    # -- writer reports (writer thread) -------------------------------------------------------
    def file_opened(self, path: Path) -> None:
        with self._lock:
            self._announce(path, done=False, success=False)

    def frame_saved(self, index: int) -> None:
        with self._lock:
            running = self._running
            saving = running.saving if running is not None else None
            if (
                running is not None
                and saving is not None
                and saving.advances_number
                and running.file_number is not None
            ):
                per_file = saving.frames_in_a_file
                if (index + 1) % per_file == 0:
                    # CtSaving: the number passes a file as soon as it holds its frames, before the
                    # frame is reported saved (sardana-limaccd reads it after each startAcq).
                    self._advance_next_number(running.file_number + (index + 1) // per_file)
            self.last_image_saved = index
            self._notify("last_image_saved", index)

    def file_closed(self, path: Path, frames: int, error: str | None) -> None:
        with self._lock:
            self._created.pop(path, None)
            number = self._file_numbers.pop(path, None)
            if number is not None:
                self._advance_next_number(number + 1)  # a file closed early (stop, abort) counts too
            self._announce(path, done=True, success=error is None)
            if error:
                self._files_failed = True
                self._fault(error)
                if self._running is not None:
                    self.backend.abort()

    # -- helpers (caller holds the lock) ------------------------------------------------------
    def _announce(self, path: Path, *, done: bool, success: bool) -> None:
        kinds = self._file_kinds
        saving_format, data_path = (kinds.pop if done else kinds.get)(path, (SavingFormat.HDF5BS, DATA_PATH))
        self.file_event = file_event_json(
            path, done=done, success=success, saving_format=saving_format, data_path=data_path
        )
        self._notify("file_event", self.file_event)

    def _fault(self, reason: str) -> None:
        self.fault_error = reason
        self._notify("acq_status_fault_error", reason)
        self._set_status(AcqStatus.Fault)

    def _advance_next_number(self, number: int) -> None:
        if number > self.saving.next_number:
            self.saving = replace(self.saving, next_number=number)
            self._notify("saving_next_number", number)

    def _set_status(self, status: AcqStatus) -> None:
        if status != self.acq_status:
            self.acq_status = status
            self._notify("acq_status", status.value)
            with self._status_changed:
                self._status_changed.notify_all()

    def _set_ready_for_next_image(self, ready: bool) -> None:
        if ready != self.ready_for_next_image:
            self.ready_for_next_image = ready
            self._notify("ready_for_next_image", ready)
