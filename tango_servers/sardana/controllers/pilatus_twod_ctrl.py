"""Sardana 2D controller for the Pilatus, through its Lima-compatible (LimaCCDs) Tango interface.

One measurement (a `ct`, or all points of a step scan) is one Lima acquisition:

    PrepareOne: acq_trigger_mode INTERNAL_TRIGGER_MULTI, acq_nb_frames = points, acq_expo_time,
                saving_* (one frame per file, a fresh prefix per measurement), prepareAcq
    StartOne:   startAcq before the first point, then softTrigger: one frame per point
    StateOne:   Moving until last_image_saved reaches the frame of this point
    RefOne:     h5file://<the frame's file>::entry_0000/measurement/data
    ReadOne:    the frame itself, read back from that file (for pseudo counters such as ROI sums)
    AbortOne:   abortAcq; the detector closes its file and returns to Ready

One frame per file keeps each reference a whole (1, rows, columns) dataset, which is what
Sardana's NXscan recorder maps into the scan file's virtual dataset, frame by frame.
Only software synchronisation (step scans, `ct`, `timescan`) is supported.
"""

import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle-LZ4 filter of the compressed format)
import numpy as np
from sardana import State
from sardana.pool import AcqSynch
from sardana.pool.controller import DefaultValue, Description, Referable, TwoDController, Type

from ophyd_tango.core.errors import error_description
from tango_servers.sardana._tango_link import DeviceLink
from tango_servers.stack.waiting import wait_until

DATA_PATH = "/entry_0000/measurement/data"  # tango_servers.pilatus.nexus.DATA_PATH
INDEX_FORMAT = "{:04d}"  # Lima's file numbering: prefix + 4 digits + suffix
SOFTWARE_SYNCH = (AcqSynch.SoftwareTrigger, AcqSynch.SoftwareGate)


class PilatusTwoDController(TwoDController, Referable):
    """A Pilatus served by our Lima-compatible Pilatus Tango server (axis 1: the image)."""

    gender = "TwoD"
    model = "Pilatus (LimaCCDs interface)"
    organization = "tango-bluesky-suite"
    MaxDevice = 1
    default_timer = 1  # a channel counted on its own (Start on its Tango device) is its own timer

    ctrl_properties = {
        "Device": {Type: str, Description: "the Pilatus Tango device", DefaultValue: "sim/pilatus/1"},
        "SavingDirectory": {
            Type: str,
            Description: "directory for frames taken by Sardana (empty: the detector's saving_directory)",
            DefaultValue: "",
        },
        "SavingPrefix": {
            Type: str,
            Description: "file name prefix of frames taken by Sardana",
            DefaultValue: "sardana_",
        },
        "LatencyTime": {
            Type: float,
            Description: (
                "seconds between the end of one frame and the next trigger Sardana may send "
                "(time scans): frame readout, file flush and the Tango round trips"
            ),
            DefaultValue: 0.25,
        },
        "ReadyTimeout": {
            Type: float,
            Description: "seconds to wait for the detector to return to Ready before a new measurement",
            DefaultValue: 10.0,
        },
    }

    def __init__(self, inst, props, *args, **kwargs):
        TwoDController.__init__(self, inst, props, *args, **kwargs)
        self._link = DeviceLink(self.Device)
        self._synchronization = AcqSynch.SoftwareTrigger
        self._value_ref_enabled = False
        self._expo_time = 1.0
        self._frames = 0  # frames in the prepared acquisition
        self._triggers = 0  # frames triggered so far
        self._files: tuple[Path, str, str] | None = None  # directory, prefix, suffix of this acquisition
        self._frame_cache: tuple[int, np.ndarray] | None = None
        self._shape: tuple[int, int] | None = None
        self._measurement = 0
        self._error = ""  # why the last frame could not be triggered (reported as Fault)

    # -- configuration --------------------------------------------------------------------------
    def GetCtrlPar(self, name):
        if name == "synchronization":
            return self._synchronization
        if name == "latency_time":
            return self.LatencyTime
        return None

    def SetCtrlPar(self, name, value):
        if name == "synchronization":
            self._synchronization = value

    def GetAxisPar(self, axis, name):
        if name == "shape":
            if self._shape is None:
                width, height = (v.value for v in self._link.proxy.read_attributes(["image_width", "image_height"]))
                self._shape = (height, width)
            # numpy order (rows, columns): the NXscan recorder builds its datasets in this order.
            return list(self._shape)
        if name == "value_ref_enabled":
            return self._value_ref_enabled
        return None

    def SetAxisPar(self, axis, name, value):
        if name == "value_ref_enabled":
            self._value_ref_enabled = bool(value)
        # value_ref_pattern is not used: references name the files the detector itself wrote.

    # -- acquisition ----------------------------------------------------------------------------
    def PrepareOne(self, axis, value, repetitions, latency, nb_starts):
        if self._synchronization not in SOFTWARE_SYNCH:
            raise ValueError(
                f"{self.Device}: only software synchronisation is supported by this controller, "
                f"got {AcqSynch(self._synchronization).name}"
            )
        self._prepare(expo_time=value, frames=max(1, nb_starts) * max(1, repetitions), latency=latency)

    def _prepare(self, expo_time: float, frames: int, latency: float = 0.0) -> None:
        self._wait_ready()
        proxy = self._link.proxy
        self._measurement += 1
        prefix = f"{self.SavingPrefix}{time.strftime('%Y%m%d_%H%M%S')}_{self._measurement:03d}_"
        settings = [
            ("acq_trigger_mode", "INTERNAL_TRIGGER_MULTI"),
            ("acq_nb_frames", frames),
            ("acq_expo_time", expo_time),
            ("latency_time", latency),
            ("saving_mode", "AUTO_FRAME"),
            ("saving_frame_per_file", 1),
            ("saving_prefix", prefix),
            ("saving_next_number", 0),
        ]
        if self.SavingDirectory:
            Path(self.SavingDirectory).mkdir(parents=True, exist_ok=True)
            settings.append(("saving_directory", self.SavingDirectory))
        try:
            for name, value in settings:
                self._write_setting(name, value)
            proxy.command_inout("prepareAcq")
            directory, suffix = (v.value for v in proxy.read_attributes(["saving_directory", "saving_suffix"]))
        except Exception as exc:
            raise RuntimeError(f"{self.Device} refused the acquisition: {error_description(exc)}") from exc
        self._files = (Path(directory), prefix, suffix)
        self._error = ""
        self._expo_time = expo_time
        self._frames = frames
        self._triggers = 0
        self._frame_cache = None

    def _write_setting(self, name: str, value) -> None:
        self._link.proxy.write_attribute(name, value)  # LimaCCDs settings are strings

    def _wait_ready(self) -> None:
        """Our own acquisition left running (a scan that ended early) is aborted before the next one;
        someone else's (bluesky's) is never touched: the measurement is refused instead."""
        if self._acq_status() == "Running":
            prefix = self._link.read("saving_prefix")
            if self._files is None or prefix != self._files[1]:
                raise RuntimeError(
                    f"{self.Device} is acquiring for another client (saving_prefix '{prefix}'): "
                    "wait until its acq_status is Ready, or stop that acquisition first"
                )
            self._link.proxy.command_inout("abortAcq")
        try:
            status = wait_until(
                lambda: (s := self._acq_status()) in ("Ready", "Fault") and s,
                self.ReadyTimeout,
                interval=0.05,
                message=f"{self.Device} to return to Ready",
            )
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}; try again when its acq_status is Ready") from exc
        if status == "Fault":
            raise RuntimeError(f"{self.Device} is in Fault: {self._link.read('acq_status_fault_error')}")

    def _acq_status(self) -> str:
        return str(self._link.read("acq_status"))

    def LoadOne(self, axis, value, repetitions, latency):
        # A channel counted on its own (no PrepareOne) gets a one-frame acquisition in StartOne.
        self._expo_time = value

    def StartOne(self, axis, value=None):
        # Failures are reported through StateOne (Fault): an exception raised here, in Sardana's
        # synchroniser thread, can leave the measurement group stuck in MOVING.
        try:
            if self._triggers >= self._frames:
                self._prepare(expo_time=self._expo_time, frames=1)
        except Exception as exc:
            self._error = str(exc)
            return
        proxy = self._link.proxy
        self._triggers += 1
        try:
            if self._triggers == 1:
                proxy.command_inout("startAcq")
            proxy.command_inout("softTrigger")
        except Exception as exc:
            self._error = f"{self.Device} did not take frame {self._triggers}: {error_description(exc)}"

    def StateOne(self, axis):
        if self._error:
            return State.Fault, self._error
        try:
            status_attr, saved_attr = self._link.proxy.read_attributes(["acq_status", "last_image_saved"])
        except Exception as exc:
            return State.Fault, f"{self.Device} does not answer: {error_description(exc)}"
        status = str(status_attr.value)
        if status == "Fault":
            reason = self._link.proxy.read_attribute("acq_status_fault_error").value
            return State.Fault, f"{self.Device}: {reason}"
        waiting_for = self._triggers - 1
        if waiting_for >= 0 and saved_attr.value < waiting_for and status == "Running":
            return State.Moving, f"{self.Device}: acquiring frame {waiting_for + 1} of {self._frames}"
        return State.On, f"{self.Device}: {status}"

    def _frame_file(self, index: int) -> Path:
        directory, prefix, suffix = self._files
        return directory / f"{prefix}{INDEX_FORMAT.format(index)}{suffix}"

    def RefOne(self, axis):
        if self._triggers == 0 or self._files is None:
            raise RuntimeError(f"{self.Device}: no frame taken yet")
        # Sardana's recorder wants the dataset path without its leading slash.
        return f"h5file://{self._frame_file(self._triggers - 1)}::{DATA_PATH.lstrip('/')}"

    def ReadOne(self, axis):
        index = self._triggers - 1
        if index < 0 or self._files is None:
            raise RuntimeError(f"{self.Device}: no frame taken yet")
        if self._frame_cache is None or self._frame_cache[0] != index:
            # The writer may still hold the file open (SWMR) until the next frame rolls it over.
            with h5py.File(self._frame_file(index), "r", swmr=True) as h5:
                frame = h5[DATA_PATH][0]
            self._frame_cache = (index, frame)
        return self._frame_cache[1]

    def AbortOne(self, axis):
        self._end("abortAcq")

    def StopOne(self, axis):
        self._end("stopAcq")

    def _end(self, command: str) -> None:
        self._frames = self._triggers  # nothing more is expected from this acquisition
        running = self._acq_status() == "Running"
        if running and self._files is not None and self._link.read("saving_prefix") == self._files[1]:
            self._link.proxy.command_inout(command)
