"""The Tango class `Pilatus`: Lima's Pilatus camera plugin device, next to LimaCCDs in one server.

Default device `sim/pilatus_cam/1`, in the same server as the LimaCCDs device `sim/pilatus/1`,
whose detector control it shares (`camserver.shared_control`). Names, Tango types and value sets
are those of Lima-camera-pilatus `tango/Pilatus.py`::

    threshold (DevLong, eV), energy_threshold (DevFloat, keV), threshold_gain (DevString),
    fill_mode (DevString ON/OFF), trigger_delay (DevDouble, s), nb_exposure_per_frame (DevLong),
    cam_state (DevString), readout_geometry (DevString), temperature_humidity (DevFloat[]),
    sensor_channels (DevShort[]), max_frame_rate (DevLong, Hz), readout_time (DevDouble, s)
    getAttrStringValueList(DevString) -> DevVarStringArray, sendCamserverCmd(DevString),
    resetHighVoltage(DevLong)

Writing threshold, energy_threshold or threshold_gain returns at once; the LimaCCDs device shows
acq_status Configuration until the detector is done, and refuses acquisitions meanwhile.
"""

import contextlib
import time

from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, command

from ..common import EventPublisher, refusals
from .backend import CamState
from .camserver import (
    CAM_STATES,
    FILL_MODES,
    MAX_FRAME_RATE,
    READOUT_TIME,
    SENSOR_CHANNELS,
    THRESHOLD_GAINS,
    THRESHOLD_RANGE_EV,
    NoControl,
    PilatusCamera,
    cam_state_label,
    share_control,
    watch_cam_state,
)
from .control import ControlRefused

__all__ = ["Pilatus", "share_control"]

STRING_SETTINGS = {
    "threshold_gain": THRESHOLD_GAINS,
    "fill_mode": FILL_MODES,
    "cam_state": CAM_STATES,
    "readout_geometry": ("Not supported",),
}


def _refusals(origin: str) -> contextlib.AbstractContextManager[None]:
    return refusals(origin, ControlRefused, reason="Pilatus_Refused")


SETTING_THRESHOLD_STATES = ("SETTING_THRESHOLD", "SETTING_ENERGY")


class Pilatus(Device):
    """Pilatus camera settings (Lima camera plugin names) of the detector the LimaCCDs device drives."""

    def init_device(self) -> None:
        super().init_device()
        self._camera = PilatusCamera()
        self._publisher: EventPublisher[str] = EventPublisher("pilatus-cam-events", self._push_cam_state)
        self.set_change_event("cam_state", True, False)
        watch_cam_state(self._cam_state_changed)
        self.set_state(DevState.ON)

    def delete_device(self) -> None:
        if hasattr(self, "_publisher"):
            watch_cam_state(self._cam_state_changed, stop=True)
            self._publisher.close(wait=5.0)
        super().delete_device()

    def _cam_state_changed(self, state: CamState) -> None:
        self._publisher.offer(cam_state_label(state))

    def _push_cam_state(self, label: str) -> None:
        self.push_change_event("cam_state", label)

    def dev_state(self) -> DevState:
        return DevState.ON if self._camera.connected else DevState.FAULT

    def dev_status(self) -> str:
        try:
            return f"cam_state {self._camera.cam_state}"
        except NoControl as exc:
            return str(exc)

    # -- threshold and energy -----------------------------------------------------------------
    @attribute(
        dtype="DevLong",
        access=AttrWriteType.READ_WRITE,
        unit="eV",
        min_value=THRESHOLD_RANGE_EV[0],
        max_value=THRESHOLD_RANGE_EV[1],
        doc="counting threshold (camserver setthreshold); takes seconds: acq_status Configuration meanwhile",
    )
    def threshold(self) -> tuple[int, float, AttrQuality]:
        with _refusals("threshold"):
            return self._camera.threshold, time.time(), self._threshold_quality()

    @threshold.write
    def threshold(self, value: int) -> None:
        with _refusals("threshold"):
            self._camera.set_threshold(int(value))

    @attribute(
        dtype="DevFloat",
        access=AttrWriteType.READ_WRITE,
        unit="keV",
        format="%.3f",
        doc="X-ray energy (camserver setenergy): the threshold goes to half of it; takes seconds",
    )
    def energy_threshold(self) -> tuple[float, float, AttrQuality]:
        with _refusals("energy_threshold"):
            return self._camera.energy, time.time(), self._threshold_quality()

    @energy_threshold.write
    def energy_threshold(self, value: float) -> None:
        with _refusals("energy_threshold"):
            self._camera.set_energy(float(value))

    def _threshold_quality(self) -> AttrQuality:
        """CHANGING while the detector sets its threshold (the Tango quality of a value on its way,
        as the axes' position while moving): Sardana's TangoAttrMotorController is Moving meanwhile."""
        setting = self._camera.cam_state in SETTING_THRESHOLD_STATES
        return AttrQuality.ATTR_CHANGING if setting else AttrQuality.ATTR_VALID

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc=f"gain used with the threshold: {', '.join(THRESHOLD_GAINS)} (any case); takes seconds",
    )
    def threshold_gain(self) -> str:
        with _refusals("threshold_gain"):
            return self._camera.gain

    @threshold_gain.write
    def threshold_gain(self, value: str) -> None:
        with _refusals("threshold_gain"):
            self._camera.set_gain(value)

    # -- camserver settings -------------------------------------------------------------------
    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="gap filling (camserver gapfill): ON or OFF")
    def fill_mode(self) -> str:
        return "ON" if self._camera.settings.fill_mode else "OFF"

    @fill_mode.write
    def fill_mode(self, value: str) -> None:
        with _refusals("fill_mode"):
            self._camera.set_fill_mode(value)

    @attribute(
        dtype="DevDouble",
        access=AttrWriteType.READ_WRITE,
        unit="s",
        doc="delay between the external trigger and the exposure (camserver delay)",
    )
    def trigger_delay(self) -> float:
        return self._camera.settings.trigger_delay

    @trigger_delay.write
    def trigger_delay(self, value: float) -> None:
        with _refusals("trigger_delay"):
            self._camera.set_trigger_delay(value)

    @attribute(
        dtype="DevLong",
        access=AttrWriteType.READ_WRITE,
        doc="exposures summed into one frame (camserver nexpframe)",
    )
    def nb_exposure_per_frame(self) -> int:
        return self._camera.settings.nb_exposure_per_frame

    @nb_exposure_per_frame.write
    def nb_exposure_per_frame(self, value: int) -> None:
        with _refusals("nb_exposure_per_frame"):
            self._camera.set_nb_exposure_per_frame(int(value))

    @attribute(dtype=str, doc=f"camserver state: {', '.join(CAM_STATES)}; change events")
    def cam_state(self) -> str:
        with _refusals("cam_state"):
            return self._camera.cam_state

    @attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="hardware ROI (C2, C18 ...): Not supported here")
    def readout_geometry(self) -> str:
        return "Not supported"

    @readout_geometry.write
    def readout_geometry(self, value: str) -> None:
        with _refusals("readout_geometry"):
            raise ControlRefused(f"readout_geometry '{value}': this detector has no hardware ROI (Not supported)")

    # -- sensors and timing -------------------------------------------------------------------
    @attribute(
        dtype=("DevFloat",),
        max_dim_x=256,
        label="temperature (C) and humidity (%) for each channel",
        doc="temperature, humidity, temperature, humidity ....",
    )
    def temperature_humidity(self) -> list[float]:
        return self._camera.temperature_humidity()

    @attribute(
        dtype=("DevShort",),
        max_dim_x=256,
        label="Temperature/humidiy sensor channel numbers",
        doc="<sensor X>, <sensor Y>, ...",
    )
    def sensor_channels(self) -> list[int]:
        return list(SENSOR_CHANNELS)

    @attribute(dtype="DevLong", label="Maximum Frame Rate", unit="Hz", doc="In Hz")
    def max_frame_rate(self) -> int:
        return MAX_FRAME_RATE

    @attribute(dtype="DevDouble", label="Readout Time", unit="s", doc="The detector readout time in second")
    def readout_time(self) -> float:
        return READOUT_TIME

    # -- commands -----------------------------------------------------------------------------
    @command(dtype_in=str, doc_in="Attribute name", dtype_out=(str,), doc_out="Authorized String value list")
    def getAttrStringValueList(self, name: str) -> list[str]:
        return list(STRING_SETTINGS.get(name.lower(), ()))

    @command(dtype_in=str, doc_in="Camserver command to send")
    def sendCamserverCmd(self, line: str) -> None:
        with _refusals("sendCamserverCmd"):
            self._camera.send_command(line)

    @command(dtype_in="DevLong", doc_in="sleep_time (s)")
    def resetHighVoltage(self, sleep_time: int) -> None:
        with _refusals("resetHighVoltage"):
            self._camera.reset_high_voltage(sleep_time)
