"""How a detector `TangoDevice` acquires: trigger, stage/unstage, and file-backed frames.

Two styles, chosen from the roles:
- busy-state (Sardana counters): `trigger` runs a command, done when State leaves `busy_state`;
- acquisition-status (LimaCCDs, our Pilatus): `stage()` selects the step trigger mode with an open
  number of frames, runs `prepare` and arms with `start`; each `trigger()` takes one frame and is
  done when `frame_counter` (last_image_saved) reaches it; `unstage()` stops the acquisition,
  waits until `acq_status` is Ready (files closed) and restores what stage changed.
A detector that writes files (`frame_counter` plus `file_event` or `saving`) describes its frames
as an external `STREAM:` data key and hands out StreamResource/StreamDatum documents.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import tango
from event_model import compose_stream_resource

from ._deadline import UNREACHABLE_GRACE, Deadline, wait_until
from ._host import LogicHost
from ._link import AttributeValue, DeviceLink
from ._status import TangoStatus
from .core.errors import TangoDeviceError, TangoTimeoutError, is_unreachable
from .core.roles import Roles
from .core.subscription import AttributeUpdate, Subscription

__all__ = ["AcquisitionFailed", "AcquisitionLogic", "FileStream"]

logger = logging.getLogger(__name__)

SAFETY_PERIOD = 1.0
RETRY_PERIOD = 0.2  # seconds between reads once one failed
DEFAULT_DATASET = "/entry_0000/measurement/data"  # LimaCCDs' HDF5 layout
BLACK_BOX_DEPTH = 25
# One black-box line: "02/12/2026 04:10:13:51 : Operation command_inout_4 (cmd = abortAcq) from
# cache_device requested from vm (CPP/Python client with PID 15496)"
BLACK_BOX_COMMAND = re.compile(
    r"^(?P<when>.+?) : Operation \S+ \(cmd = (?P<command>\w+)\).* requested from (?P<who>.+)$"
)
LIMA_IMAGE_TYPES = {
    "Bpp8": "|u1", "Bpp8S": "|i1", "Bpp10": "<u2", "Bpp12": "<u2", "Bpp14": "<u2", "Bpp16": "<u2",
    "Bpp16S": "<i2", "Bpp32": "<u4", "Bpp32S": "<i4", "Bpp32F": "<f4",
}  # fmt: skip


class AcquisitionFailed(TangoDeviceError):
    """An acquisition was refused, faulted or timed out."""


class AcquisitionLogic:
    """Triggering one detector by its roles."""

    def __init__(self, device: LogicHost, link: DeviceLink, roles: Roles):
        self.device = device
        self.link = link
        self.roles = roles
        self.trigger_command = link.command_named(roles.get("trigger"))
        self.prepare_command = link.command_named(roles.get("prepare"))
        self.start_command = link.command_named(roles.get("start"))
        self.stop_command = link.command_named(roles.get("stop"))
        self.abort_command = link.command_named(roles.get("abort"))
        self.busy_states = roles.states("busy_state") or {tango.DevState.RUNNING}
        self.acq_status = link.spelled(roles.get("acq_status"))
        self.ready_value = roles.get("ready_value", "Ready")
        self.fault_value = roles.get("fault_value", "Fault")
        self.frame_counter = link.spelled(roles.get("frame_counter"))
        self.nb_frames = link.spelled(roles.get("nb_frames"))
        self.exposure = link.spelled(roles.get("exposure"))
        self.trigger_mode = link.spelled(roles.get("trigger_mode"))
        self.step_trigger_mode = roles.get("step_trigger_mode")
        self.framed = self.frame_counter is not None  # acquisition-status style
        self.frames_triggered = 0
        self.frames_saved = 0  # frames on disk in this acquisition (frame_counter + 1)
        self.armed = False
        self.failure: Exception | None = None  # why a frame of this staging failed
        self._wake = threading.Event()
        self._values: dict[str, AttributeValue] = {}
        self.stream: FileStream | None = None
        followed = ["State"] + [n for n in (self.acq_status, self.frame_counter) if n]
        self._subscription = link.subscriber.subscribe(link.trl, followed, self._on_update, kinds=device.event_kinds)

    def _on_update(self, update: AttributeUpdate) -> None:
        if update.error is None:
            key = update.attribute.lower()
            previous = self._values.get(key)
            if previous is None or update.timestamp >= previous.timestamp:
                self._values[key] = AttributeValue(update.value, update.quality, update.timestamp)
        self._wake.set()

    # ---- stage / unstage -----------------------------------------------------------------------
    def stage_sigs(self) -> dict[Any, Any]:
        """Settings stage() applies (ophyd saves and unstage() restores them)."""
        sigs: dict[Any, Any] = {}
        if not self.framed:
            return sigs
        if self.trigger_mode and self.step_trigger_mode:
            sigs[self.device.signal(self.trigger_mode)] = self.step_trigger_mode
        if self.nb_frames:
            sigs[self.device.signal(self.nb_frames)] = 0  # open-ended: as many frames as points
        sigs.update(self._file_naming_sigs())
        return sigs

    def _file_naming_sigs(self) -> dict[Any, Any]:
        """A fresh file prefix, numbered from 0, for each staging.

        Another client (Sardana, a previous session) may have left its own prefix and number on
        the detector: inheriting them would mix our files with theirs or collide with files that
        exist already. unstage() restores what was there.
        """
        saving = {name.lower(): name for name in self.roles.names("saving")}
        prefix, number = saving.get("saving_prefix"), saving.get("saving_next_number")
        if not (prefix and number):
            return {}
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return {self.device.signal(prefix): f"{self.device.name}_{stamp}_", self.device.signal(number): 0}

    def after_stage(self) -> None:
        """Prepare and arm an acquisition (acquisition-status style)."""
        if not self.framed:
            return
        self.frames_triggered = self.frames_saved = 0
        self.failure = None
        if self.stream is not None:
            self.stream.reset()
        if self.prepare_command:
            self.link.command(self.prepare_command)
        if self.stream is not None:
            self.stream.after_prepare()
        if self.start_command and self.start_command != self.trigger_command:
            self.link.command(self.start_command)
        self.armed = True

    def before_unstage(self) -> None:
        """Stop the acquisition and wait until the detector is Ready (its files closed), for as
        long as a frame may take; a detector that stopped answering is not waited for."""
        if not self.framed or not self.armed:
            return
        self.armed = False
        if self.failure is not None and is_unreachable(getattr(self.failure, "reason", "")):
            return
        try:
            if self.acq_status_label() != self.ready_value and self.stop_command:
                self.link.command(self.stop_command)
            self.wait_until_ready(self._trigger_timeout())
        except (TangoDeviceError, TimeoutError) as exc:
            logger.warning("%s: stopping the acquisition at unstage: %s", self.device.name, exc)

    # ---- trigger -------------------------------------------------------------------------------
    def trigger(self) -> TangoStatus:
        status = TangoStatus(self.device, call_stop_on_failure=False)
        status.add_callback(self._remember_failure)
        if self.framed and not self.armed:
            threading.Thread(target=self._one_shot, args=(status,), daemon=True).start()
            return status
        index = self.frames_triggered
        self.frames_triggered += 1
        started = time.time()
        try:
            if self.trigger_command:
                self.link.command(self.trigger_command)
        except TangoDeviceError as exc:
            status.set_exception(
                AcquisitionFailed(f"{self.device.name}: trigger refused: {exc}{self._ended_note()}", exc.reason)
            )
            return status
        threading.Thread(
            target=self._watch, args=(status, index, started), name=f"trigger:{self.device.name}", daemon=True
        ).start()
        return status

    def _ended_note(self) -> str:
        """Why a trigger was refused, when the acquisition armed at stage has ended."""
        try:
            ended = self.framed and self.armed and self.acq_status_label(fresh=True) == self.ready_value
        except TangoDeviceError:
            return ""
        return f" (the acquisition had ended: {self.who_ended()})" if ended else ""

    def _remember_failure(self, status: TangoStatus) -> None:
        if not status.success:
            self.failure = self.failure or status.exception(timeout=0)

    def _one_shot(self, status: TangoStatus) -> None:
        """trigger() on an unstaged framed detector: stage, take one frame, unstage."""
        try:
            self.device.stage()
            try:
                inner = self.trigger()
                inner.wait(self._trigger_timeout())
            finally:
                self.device.unstage()
        except Exception as exc:
            status.set_exception(exc)
        else:
            status.set_finished()

    def _trigger_timeout(self) -> float:
        exposure = 0.0
        if self.exposure:
            try:
                exposure = float(self.link.read_one(self.exposure).value)
            except (TangoDeviceError, TypeError, ValueError):
                exposure = 0.0
        return 2 * exposure + 10.0 + 2 * self.link.timeout

    def _watch(self, status: TangoStatus, index: int, started: float) -> None:
        name = self.device.name
        limit = self._trigger_timeout()
        deadline = Deadline(limit)
        next_check = 0.0
        failing_since: float | None = None
        first_error: TangoDeviceError | None = None  # the most telling: later ones say "delayed"
        while not status.done:
            now = time.monotonic()
            if now >= next_check or self._looks_done(index):
                next_check = now + SAFETY_PERIOD
                try:
                    verdict = self._check(index)
                    failing_since, first_error = None, None
                except TangoDeviceError as exc:
                    failing_since, first_error = failing_since or now, first_error or exc
                    # A timed-out read has waited the link's timeout already: the device is hung.
                    hung = isinstance(exc, TangoTimeoutError)
                    if hung or deadline.expired or time.monotonic() - failing_since >= UNREACHABLE_GRACE:
                        lost = f"{name}: frame {index} not taken, {self.link.key} stopped answering: {first_error}"
                        status.set_exception(AcquisitionFailed(lost, first_error.reason))
                        return
                    verdict, next_check = None, now + RETRY_PERIOD
                if verdict is True:
                    status.set_finished()
                    return
                if isinstance(verdict, str):
                    status.set_exception(AcquisitionFailed(f"{name}: {verdict}"))
                    return
            if deadline.expired:
                try:
                    self.stop()
                except TangoDeviceError as exc:
                    logger.warning("%s: stop after a trigger timeout failed: %s", name, exc)
                status.set_exception(TangoTimeoutError(f"{name}: frame {index} not done after {limit:.1f} s; stopped"))
                return
            deadline.pause(max(0.0, next_check - time.monotonic()), self._wake)

    def _looks_done(self, index: int) -> bool:
        """From events alone (no I/O): worth confirming with a read?"""
        if self.frame_counter is not None:
            counter = self._values.get(self.frame_counter.lower())
            status = self._values.get((self.acq_status or "").lower())
            return (counter is not None and counter.value >= index) or (
                status is not None and self.label(status.value) == self.fault_value
            )
        state = self._values.get("state")
        return state is not None and state.value not in self.busy_states

    def _check(self, index: int) -> bool | str | None:
        """True when frame `index` is done; a message when the acquisition failed."""
        if self.frame_counter is not None:
            names = [self.frame_counter] + ([self.acq_status] if self.acq_status else [])
            values = self.link.read(names)
            label = self.label(values[self.acq_status].value) if self.acq_status else None
            if label == self.fault_value:
                return f"acquisition failed: {self.status_text()}"
            saved = int(values[self.frame_counter].value)
            self.frames_saved = max(self.frames_saved, saved + 1)
            if saved >= index:
                return True
            if self.armed and label == self.ready_value:
                ended = f"acquisition on {self.link.key} ended with {saved + 1} of {index + 1} frames saved"
                return f"{ended}: {self.who_ended()}"
            return None
        state = self.link.read(["State"])["State"].value
        if state == tango.DevState.FAULT:
            return f"FAULT during acquisition: {self.status_text()}"
        return True if state not in self.busy_states else None

    # ---- helpers -------------------------------------------------------------------------------
    def label(self, value: Any) -> str:
        """An acq_status value as its label (Ready, Running, Fault, ...)."""
        return self.link.attribute_type(self.acq_status).to_bluesky(value) if self.acq_status else str(value)

    def acq_status_label(self, fresh: bool = False) -> str:
        """The acquisition status label: the last event's, or read now when `fresh`."""
        if not self.acq_status:
            return self.ready_value
        cached = None if fresh else self._values.get(self.acq_status.lower())
        value = cached.value if cached is not None else self.link.read_one(self.acq_status).value
        return self.label(value)

    def who_ended(self) -> str:
        """Who ended the acquisition, from the device's black box (Tango's log of the calls it
        received, newest first): the stop or abort command another client sent; a restart when
        none of our own calls is left in it."""
        ending = {c.lower() for c in (self.stop_command, self.abort_command) if c}
        ours = f"PID {os.getpid()})"
        try:
            calls = [call.strip() for call in self.link.proxy.black_box(BLACK_BOX_DEPTH)]
        except Exception:  # an old or odd server: say what we know
            calls = []
        for call in calls:
            match = BLACK_BOX_COMMAND.match(call)
            if match and match.group("command").lower() in ending and ours not in call:
                return f"{match.group('command')} sent by another client at {match['when']}, from {match['who']}"
        status = (self.status_text().splitlines() or [""])[0]
        if calls and not any(ours in call and BLACK_BOX_COMMAND.match(call) for call in calls):
            return f"the server restarted (none of our commands in its black box); Status: {status}"
        return f"no stop nor abort in its black box; Status: {status}"

    def status_text(self) -> str:
        """The device's Status text, for error messages (never raises)."""
        try:
            return str(self.link.read_one("Status").value).strip()
        except TangoDeviceError as exc:
            return f"(Status unreadable: {exc})"

    def wait_until_ready(self, timeout: float) -> None:
        """Return once acq_status is Ready or Fault (files closed); TangoTimeoutError after `timeout`."""
        wait_until(
            lambda: self.acq_status_label(fresh=True) in (self.ready_value, self.fault_value),
            timeout,
            f"{self.device.name}: not ready",
            wake=self._wake,
        )

    def resync(self) -> None:
        """After a pause: count frames from what is on disk, and leave frames taken for points the
        RunEngine will redo out of the stream (they stay in the file, unreferenced)."""
        if self.frame_counter is None or not self.armed:
            return
        saved = int(self.link.read_one(self.frame_counter).value)
        self.frames_saved = self.frames_triggered = saved + 1
        if self.stream is not None:
            self.stream.emitted = max(self.stream.emitted, self.frames_saved)

    def stop(self) -> None:
        command = self.stop_command or self.abort_command
        if command and (not self.framed or self.acq_status_label(fresh=True) != self.ready_value):
            self.link.command(command)

    def close(self) -> None:
        self._subscription.close()


class FileStream:
    """Frames a detector writes to HDF5 files, as StreamResource/StreamDatum documents.

    Files come from `file_event` (JSON: file_path, hinted_location.data, done) or, for LimaCCDs,
    from the saving settings. Frame i of an acquisition is row i % F of its (i // F)-th file,
    F = `saving_frame_per_file`.
    """

    def __init__(self, device: LogicHost, link: DeviceLink, roles: Roles, acquisition: AcquisitionLogic):
        self.device = device
        self.link = link
        self.acquisition = acquisition
        self.file_event = link.spelled(roles.get("file_event"))
        self.dataset = roles.get("dataset", DEFAULT_DATASET)
        self.frames_per_file_attr = link.spelled(roles.get("frames_per_file") or "saving_frame_per_file")
        self.data_key = f"{device.name}_image"
        self.files: list[tuple[str, str]] = []  # (path, dataset) in the order announced
        self.frames_per_file = 10**9
        self.emitted = 0
        self._resources: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._listening = False  # only files announced after our prepare belong to the acquisition
        if self.file_event:
            self._subscription = link.subscriber.subscribe(
                link.trl, [self.file_event], self._on_file_event, kinds=device.event_kinds
            )

    def reset(self) -> None:
        with self._lock:
            self.files, self._resources, self.emitted = [], {}, 0
            self._listening = False
        if self.frames_per_file_attr:
            try:
                self.frames_per_file = max(1, int(self.link.read_one(self.frames_per_file_attr).value))
            except (TangoDeviceError, TypeError, ValueError):
                self.frames_per_file = 10**9
        if not self.file_event:
            self._announce(self._lima_path())  # Lima names the file before prepareAcq

    def after_prepare(self) -> None:
        """The first file of the acquisition: the server announces it on prepare."""
        self._listening = True
        if self.file_event:
            self._take(self.link.read_one(self.file_event).value)

    def _on_file_event(self, update: AttributeUpdate) -> None:
        if update.error is None and self._listening:
            self._take(update.value)

    def _take(self, text: Any) -> None:
        try:
            event = json.loads(text or "{}")
        except (TypeError, ValueError):
            return
        if event.get("file_path") and not event.get("done"):
            dataset = (event.get("hinted_location") or {}).get("data", self.dataset)
            self._announce(event["file_path"], dataset)

    def _announce(self, path: str | None, dataset: str | None = None) -> None:
        if path:
            with self._lock:
                if all(known != path for known, _ in self.files):
                    self.files.append((path, dataset or self.dataset))

    def _lima_path(self) -> str | None:
        names = ["saving_directory", "saving_prefix", "saving_next_number", "saving_suffix"]
        spelled = [name for name in (self.link.spelled(n) for n in names) if name is not None]
        if len(spelled) < len(names):
            return None
        index_format = self.link.spelled("saving_index_format")  # LimaCCDs' printf format, %04d by default
        values = self.link.read(spelled + ([index_format] if index_format else []))
        directory, prefix, number, suffix = (values[n].value for n in spelled)
        index = (values[index_format].value if index_format else "%04d") % max(0, int(number))
        return os.path.join(directory, f"{prefix}{index}{suffix}")

    # ---- bluesky -------------------------------------------------------------------------------
    def describe(self) -> dict[str, dict[str, Any]]:
        height, width, dtype = self._frame_shape()
        return {
            self.data_key: {
                "source": self.link.source(self.file_event or "saving_directory"),
                "dtype": "array",
                "dtype_numpy": dtype,
                "shape": [height, width],
                "external": "STREAM:",
            }
        }

    def _frame_shape(self) -> tuple[int, int, str]:
        names = [n for n in ("image_height", "image_width", "image_type") if n in self.link.types]
        values = self.link.read([self.link.types[n].name for n in names]) if names else {}
        lookup = {k.lower(): v.value for k, v in values.items()}
        dtype = LIMA_IMAGE_TYPES.get(str(lookup.get("image_type")), "<i4")
        return int(lookup.get("image_height", 0)), int(lookup.get("image_width", 0)), dtype

    def get_index(self) -> int:
        return self.acquisition.frames_saved

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """StreamResource for each new file, StreamDatum for each new range of saved frames."""
        upto = self.acquisition.frames_saved if index is None else min(index, self.acquisition.frames_saved)
        while self.emitted < upto:
            file_index, row = divmod(self.emitted, self.frames_per_file)
            stop = min(upto, (file_index + 1) * self.frames_per_file)
            bundle = self._resources.get(file_index)
            if bundle is None:
                bundle = self._resource(file_index)
                if bundle is None:
                    logger.warning("%s: no file announced for frame %d", self.device.name, self.emitted)
                    return
                self._resources[file_index] = bundle
                yield "stream_resource", bundle.stream_resource_doc
            yield "stream_datum", bundle.compose_stream_datum(indices={"start": row, "stop": row + stop - self.emitted})
            self.emitted = stop

    def _resource(self, file_index: int) -> Any:
        if file_index >= len(self.files) and self.file_event:
            self._take(self.link.read_one(self.file_event).value)  # an event may still be on its way
        if file_index >= len(self.files):
            return None
        path, dataset = self.files[file_index]
        height, width, _ = self._frame_shape()
        return compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{os.path.abspath(path)}",
            data_key=self.data_key,
            parameters={"dataset": dataset, "chunk_shape": [1, height, width]},
        )

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
