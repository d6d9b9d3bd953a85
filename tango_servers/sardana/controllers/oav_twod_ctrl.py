"""Sardana 2D controller for the OAV camera: one point = the first frame newer than the count time.

The camera streams continuously (`Start` is sent if it is not acquiring); a count of t seconds
ends once t has passed and `image_counter` has moved past its value at the start, so every
point gets a frame taken during that point. The value is the `image` attribute.
"""

import time

import numpy as np
from sardana import State
from sardana.pool import AcqSynch
from sardana.pool.controller import DefaultValue, Description, TwoDController, Type

from ophyd_tango.core.errors import error_description
from tango_servers.sardana._tango_link import DeviceLink


class OAVTwoDController(TwoDController):
    """The on-axis viewer served by our OAV Tango server (axis 1: the image)."""

    gender = "TwoD"
    model = "OAV camera"
    organization = "tango-bluesky-suite"
    MaxDevice = 1
    default_timer = 1  # a channel counted on its own (Start on its Tango device) is its own timer

    ctrl_properties = {
        "Device": {Type: str, Description: "the OAV Tango device", DefaultValue: "sim/oav/1"},
    }

    def __init__(self, inst, props, *args, **kwargs):
        TwoDController.__init__(self, inst, props, *args, **kwargs)
        self._link = DeviceLink(self.Device)
        self._synchronization = AcqSynch.SoftwareTrigger
        self._integ_time = 0.0
        self._started_at: float | None = None
        self._counter_at_start = 0
        self._image: np.ndarray | None = None

    def GetCtrlPar(self, name):
        if name == "synchronization":
            return self._synchronization
        if name == "latency_time":
            return 0.05  # up to one frame period of the camera stream
        return None

    def SetCtrlPar(self, name, value):
        if name == "synchronization":
            self._synchronization = value

    def GetAxisPar(self, axis, name):
        if name == "shape":
            return list(np.shape(self._link.read("image")))
        return None

    def SetAxisPar(self, axis, name, value):
        pass

    def LoadOne(self, axis, value, repetitions, latency):
        self._integ_time = value

    def StartOne(self, axis, value=None):
        try:
            if not self._link.read("acquiring"):
                self._link.command("Start")
            self._counter_at_start = int(self._link.read("image_counter"))
        except Exception as exc:
            raise RuntimeError(f"{self._link.name} cannot start: {error_description(exc)}") from exc
        self._image = None
        self._started_at = time.monotonic()

    def StateOne(self, axis):
        if self._started_at is None:
            return State.On, f"{self._link.name}: idle"
        try:
            counter = int(self._link.read("image_counter"))
        except Exception as exc:
            return State.Fault, f"{self._link.name} does not answer: {error_description(exc)}"
        elapsed = time.monotonic() - self._started_at
        if elapsed < self._integ_time or counter <= self._counter_at_start:
            return State.Moving, f"{self._link.name}: waiting for a frame ({elapsed:.2f} s)"
        return State.On, f"{self._link.name}: frame {counter}"

    def ReadOne(self, axis):
        if self._image is None:
            self._image = self._link.read("image")
        return self._image

    def AbortOne(self, axis):
        self._started_at = None

    def StopOne(self, axis):
        self._started_at = None
