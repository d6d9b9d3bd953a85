"""LimaCCDs: a test-only Tango server shaped like LimaCCDs (names, string enums), no bluesky_roles.

`prepareAcq` checks the settings (and, when saving, names the file
`<saving_directory>/<saving_prefix><saving_next_number %04d><saving_suffix>`), `startAcq` starts
(or, in INTERNAL_TRIGGER_MULTI, takes the next frame), `stopAcq`/`abortAcq` end it. Frames are
tiny uint16 images written with h5py to `/entry_0000/measurement/data`; `last_image_saved` counts
from 0 per acquisition; `acq_status` is "Ready", "Running" or "Fault" (strings, as in Lima).
"""

import os
import threading
import time

import h5py
import numpy as np
import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, run

WIDTH, HEIGHT = 8, 6
TRIGGER_MODES = ("INTERNAL_TRIGGER", "INTERNAL_TRIGGER_MULTI", "EXTERNAL_TRIGGER")
DATASET = "/entry_0000/measurement/data"


def _refuse(reason: str, text: str) -> None:
    tango.Except.throw_exception(reason, text, "LimaCCDs")


def _setting(name: str, dtype, **kwargs) -> attribute:
    """A READ_WRITE setting kept in `self._settings`, refused while acquiring."""

    def read(self):
        return self._settings[name]

    def write(self, value):
        if self._status == "Running":
            _refuse("LimaBusy", f"cannot change {name} while acquiring")
        if name == "acq_trigger_mode" and value not in TRIGGER_MODES:
            _refuse("LimaBadValue", f"{value!r} is not one of {', '.join(TRIGGER_MODES)}")
        self._settings[name] = value
        self._prepared = False

    return attribute(name=name, dtype=dtype, access=AttrWriteType.READ_WRITE, fget=read, fset=write, **kwargs)


class LimaCCDs(Device):
    def init_device(self):
        super().init_device()
        self._lock = threading.Lock()
        self._status = "Ready"
        self._settings = {
            "acq_nb_frames": 1,
            "acq_expo_time": 0.01,
            "acq_trigger_mode": "INTERNAL_TRIGGER",
            "saving_directory": "",
            "saving_prefix": "lima_",
            "saving_suffix": ".h5",
            "saving_next_number": 0,
            "saving_format": "HDF5",
            "saving_mode": "AUTO_FRAME",
            "saving_frame_per_file": 100,
        }
        self._saved = -1
        self._file: h5py.File | None = None
        self._prepared = False
        for name in ("acq_status", "last_image_saved", "State"):
            self.set_change_event(name, True, False)
        self.set_state(DevState.ON)

    def delete_device(self):
        self._close_file()

    # ---- settings: see _setting ----
    acq_nb_frames = _setting("acq_nb_frames", int, min_value=0)
    acq_expo_time = _setting("acq_expo_time", float, unit="s", min_value=0)
    acq_trigger_mode = _setting("acq_trigger_mode", str)
    saving_directory = _setting("saving_directory", str)
    saving_prefix = _setting("saving_prefix", str)
    saving_suffix = _setting("saving_suffix", str)
    saving_next_number = _setting("saving_next_number", int)
    saving_format = _setting("saving_format", str)
    saving_mode = _setting("saving_mode", str)
    saving_frame_per_file = _setting("saving_frame_per_file", int, min_value=1)

    @attribute(dtype=str)
    def acq_status(self):
        return self._status

    @attribute(dtype=int)
    def last_image_saved(self):
        return self._saved

    @attribute(dtype=int)
    def image_width(self):
        return WIDTH

    @attribute(dtype=int)
    def image_height(self):
        return HEIGHT

    @attribute(dtype=str)
    def image_type(self):
        return "Bpp16"

    # ---- acquisition -------------------------------------------------------------------------
    def _set_status(self, status: str) -> None:
        self._status = status
        self.set_state({"Ready": DevState.ON, "Running": DevState.RUNNING}.get(status, DevState.FAULT))
        self.push_change_event("acq_status", status)
        self.push_change_event("State", self.get_state())

    def _path(self) -> str:
        s = self._settings
        name = f"{s['saving_prefix']}{s['saving_next_number']:04d}{s['saving_suffix']}"
        return os.path.join(s["saving_directory"], name)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._settings["saving_next_number"] += 1

    @command
    def prepareAcq(self):
        if self._status == "Running":
            _refuse("LimaBusy", "an acquisition is running")
        saving = self._settings["saving_mode"] != "MANUAL"
        if saving and not os.path.isdir(self._settings["saving_directory"]):
            _refuse("LimaSavingDirectory", f"saving_directory {self._settings['saving_directory']!r} does not exist")
        self._close_file()
        self._saved = -1
        self.push_change_event("last_image_saved", self._saved)
        if saving:
            self._file = h5py.File(self._path(), "w")
            self._file.create_dataset(DATASET, shape=(0, HEIGHT, WIDTH), maxshape=(None, HEIGHT, WIDTH), dtype="u2")
        self._prepared = True

    @command
    def startAcq(self):
        if not self._prepared:
            _refuse("LimaNotPrepared", "run prepareAcq first")
        multi = self._settings["acq_trigger_mode"] == "INTERNAL_TRIGGER_MULTI"
        if self._status == "Running" and not multi:
            _refuse("LimaBusy", "an acquisition is running")
        self._set_status("Running")
        frames = 1 if multi else max(1, self._settings["acq_nb_frames"])
        threading.Thread(target=self._acquire, args=(frames,), daemon=True).start()

    def _acquire(self, frames: int) -> None:
        with self._lock:
            for _ in range(frames):
                time.sleep(self._settings["acq_expo_time"])
                if self._status != "Running":
                    return
                index = self._saved + 1
                if self._file is not None:
                    data = self._file[DATASET]
                    data.resize(index + 1, axis=0)
                    data[index] = np.full((HEIGHT, WIDTH), index, dtype=np.uint16)
                    self._file.flush()
                self._saved = index
                self.push_change_event("last_image_saved", index)
            total = self._settings["acq_nb_frames"]
            multi = self._settings["acq_trigger_mode"] == "INTERNAL_TRIGGER_MULTI"
            if not multi or (total and self._saved + 1 >= total):
                self._finish()

    def _finish(self) -> None:
        self._close_file()
        self._prepared = False
        self._set_status("Ready")

    @command
    def stopAcq(self):
        if self._status == "Running":
            self._status = "Stopping"
            with self._lock:
                self._finish()

    @command
    def abortAcq(self):
        self.stopAcq()


def main(args: list[str] | None = None) -> None:
    run((LimaCCDs,), args=args)


if __name__ == "__main__":
    main()
