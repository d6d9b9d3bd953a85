"""The `Pilatus` camera device (Lima's camera plugin) next to the LimaCCDs device, with raw PyTango
as Lima clients drive it, and CBF saving through the LimaCCDs device."""

import fabio
import numpy as np
import pytest
import tango

from tango_servers.stack.testing import PILATUS_CAMERA
from tango_servers.stack.waiting import wait_until

from .conftest import EventLog

# Lima-camera-pilatus tango/Pilatus.py: attribute -> (Tango type, format, writable)
PLUGIN_ATTRIBUTES = {
    "threshold_gain": (tango.CmdArgType.DevString, tango.AttrDataFormat.SCALAR, True),
    "threshold": (tango.CmdArgType.DevLong, tango.AttrDataFormat.SCALAR, True),
    "energy_threshold": (tango.CmdArgType.DevFloat, tango.AttrDataFormat.SCALAR, True),
    "fill_mode": (tango.CmdArgType.DevString, tango.AttrDataFormat.SCALAR, True),
    "trigger_delay": (tango.CmdArgType.DevDouble, tango.AttrDataFormat.SCALAR, True),
    "nb_exposure_per_frame": (tango.CmdArgType.DevLong, tango.AttrDataFormat.SCALAR, True),
    "cam_state": (tango.CmdArgType.DevString, tango.AttrDataFormat.SCALAR, False),
    "readout_geometry": (tango.CmdArgType.DevString, tango.AttrDataFormat.SCALAR, True),
    "temperature_humidity": (tango.CmdArgType.DevFloat, tango.AttrDataFormat.SPECTRUM, False),
    "sensor_channels": (tango.CmdArgType.DevShort, tango.AttrDataFormat.SPECTRUM, False),
    "max_frame_rate": (tango.CmdArgType.DevLong, tango.AttrDataFormat.SCALAR, False),
    "readout_time": (tango.CmdArgType.DevDouble, tango.AttrDataFormat.SCALAR, False),
}
PLUGIN_COMMANDS = {
    "getAttrStringValueList": (tango.CmdArgType.DevString, tango.CmdArgType.DevVarStringArray),
    "sendCamserverCmd": (tango.CmdArgType.DevString, tango.CmdArgType.DevVoid),
    "resetHighVoltage": (tango.CmdArgType.DevLong, tango.CmdArgType.DevVoid),
}
GAINS = ["DEFAULT", "LOW", "MID", "HIGH", "ULTRA_HIGH", "AUTO"]


ACQ_STATUS = ("Ready", "Running", "Fault", "Configuration")  # LimaCCDs' labels, in its enum order


def label(value) -> str:
    """An acq_status reading or event value as its label, whether the attribute is an enum or a string."""
    if isinstance(value, int):
        return ACQ_STATUS[value]
    return getattr(value, "name", value)


def wait_ready(pilatus: tango.DeviceProxy) -> None:
    wait_until(lambda: label(pilatus.acq_status) == "Ready", 10, message="acq_status Ready")


def refusal(call) -> str:
    with pytest.raises(tango.DevFailed) as caught:
        call()
    return caught.value.args[0].desc


@pytest.fixture
def camera(pilatus_stack, pilatus) -> tango.DeviceProxy:
    """The camera device, the detector idle and its threshold back at 8 keV, default gain."""
    proxy = pilatus_stack.proxy(PILATUS_CAMERA)
    if proxy.threshold != 8000 or proxy.threshold_gain != "DEFAULT":
        proxy.sendCamserverCmd("setthreshold 8000")
        wait_ready(pilatus)
        proxy.threshold_gain = "DEFAULT"
        wait_ready(pilatus)
    proxy.fill_mode, proxy.trigger_delay, proxy.nb_exposure_per_frame = "OFF", 0.0, 1
    return proxy


def test_camera_device_has_the_plugin_names_and_types(camera):
    assert camera.info().dev_class == "Pilatus"
    assert camera.state() == tango.DevState.ON
    for name, (data_type, data_format, writable) in PLUGIN_ATTRIBUTES.items():
        info = camera.get_attribute_config(name)
        assert (info.data_type, info.data_format) == (data_type, data_format), name
        assert (info.writable == tango.AttrWriteType.READ_WRITE) is writable, name
    for name, (argin, argout) in PLUGIN_COMMANDS.items():
        info = camera.command_query(name)
        assert (info.in_type, info.out_type) == (argin, argout), name
    assert list(camera.getAttrStringValueList("threshold_gain")) == GAINS
    assert list(camera.getAttrStringValueList("fill_mode")) == ["ON", "OFF"]
    states = list(camera.getAttrStringValueList("cam_state"))
    assert states[:3] == ["ERROR", "DISCONNECTED", "STANDBY"] and "SETTING_THRESHOLD" in states
    assert camera.cam_state == "STANDBY"
    assert len(camera.temperature_humidity) == 2 * len(camera.sensor_channels)
    assert camera.readout_time > 0 and camera.max_frame_rate > 0


def test_slow_threshold_from_the_camera_device(camera, pilatus, events):
    status = events["acq_status"]
    status.clear()
    camera.threshold = 9000  # returns at once; the detector takes threshold_time
    assert label(pilatus.acq_status) == "Configuration"
    assert camera.cam_state == "SETTING_THRESHOLD"
    for start in (pilatus.prepareAcq, pilatus.startAcq):
        text = refusal(start)
        assert "energy threshold" in text and "Ready" in text
    wait_ready(pilatus)
    wait_until(lambda: [label(v) for v in status] == ["Configuration", "Ready"], 5, message=lambda: f"events {status}")
    assert camera.threshold == 9000 and camera.cam_state == "STANDBY"
    camera.threshold_gain = "high"  # Lima's string settings are case-insensitive
    assert label(pilatus.acq_status) == "Configuration"
    wait_ready(pilatus)
    assert camera.threshold_gain == "HIGH" and camera.threshold == 9000
    camera.energy_threshold = 20.0  # camserver setenergy: the threshold goes to half the energy
    wait_ready(pilatus)
    assert camera.energy_threshold == 20.0 and camera.threshold == 10000
    pilatus.prepareAcq()  # usable again
    pilatus.startAcq()
    wait_ready(pilatus)


def test_cam_state_change_events(camera, pilatus):
    seen = EventLog(camera, "cam_state")
    wait_until(lambda: seen, 5, message="the first cam_state event")
    camera.threshold = 8500
    wait_until(lambda: seen[-2:] == ["SETTING_THRESHOLD", "STANDBY"], 10, message=lambda: f"cam_state events {seen}")


def test_threshold_refused_during_an_acquisition(camera, pilatus):
    pilatus.acq_nb_frames = 0
    pilatus.prepareAcq()
    pilatus.startAcq()
    try:
        assert "stopAcq" in refusal(lambda: setattr(camera, "threshold_gain", "HIGH"))
        assert "not idle" in refusal(lambda: setattr(camera, "fill_mode", "ON"))
    finally:
        pilatus.stopAcq()
    wait_ready(pilatus)
    assert camera.threshold_gain == "DEFAULT"


def test_camserver_command_and_high_voltage_reset(camera, pilatus):
    camera.sendCamserverCmd("setthreshold midG 7000")
    assert label(pilatus.acq_status) == "Configuration"
    wait_ready(pilatus)
    assert (camera.threshold, camera.threshold_gain) == (7000, "MID")
    camera.sendCamserverCmd("gapfill -1")
    assert camera.fill_mode == "ON"
    camera.resetHighVoltage(-1)  # the modules lose their threshold: it is set again
    assert label(pilatus.acq_status) == "Configuration"
    assert "not idle" in refusal(lambda: camera.sendCamserverCmd("nexpframe 2"))
    wait_ready(pilatus)
    assert camera.threshold == 7000


def test_bad_values_are_refused_naming_the_allowed_values(camera, pilatus):
    assert "DEFAULT, LOW, MID, HIGH, ULTRA_HIGH, AUTO" in refusal(lambda: setattr(camera, "threshold_gain", "SUPER"))
    assert "ON, OFF" in refusal(lambda: setattr(camera, "fill_mode", "maybe"))
    assert "2000..40000 eV" in refusal(lambda: camera.sendCamserverCmd("setthreshold 100"))
    assert "lowG, midG" in refusal(lambda: camera.sendCamserverCmd("setthreshold hugeG 8000"))
    assert "setenergy <eV>" in refusal(lambda: camera.sendCamserverCmd("exposure 1"))
    assert "1 or more" in refusal(lambda: setattr(camera, "nb_exposure_per_frame", 0))
    assert "Not supported" in refusal(lambda: setattr(camera, "readout_geometry", "C2"))
    assert refusal(lambda: setattr(camera, "threshold", 100))  # below the declared min_value
    assert camera.state() == tango.DevState.ON and camera.threshold == 8000
    assert label(pilatus.acq_status) == "Ready"


def test_cbf_saving_through_the_limaccds_device(camera, pilatus, tmp_path):
    pilatus.saving_frame_per_file = 1  # as Lima requires for CBF
    pilatus.saving_format = "CBF"  # saving_suffix becomes .cbf (CtSaving::setFormatSuffix)
    pilatus.acq_nb_frames = 3
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_ready(pilatus)
    assert pilatus.last_image_saved == 2
    for number in range(3):
        image = fabio.open(str(tmp_path / f"scan_{number:04d}.cbf"))
        assert image.data.shape == (pilatus.image_height, pilatus.image_width)
        assert image.data.dtype == np.int32 and (image.data[:, 60:65] == -1).all()  # module gap
        assert image.pilatus_headers["Threshold_setting"] == camera.threshold


def test_camera_follows_a_reinitialised_limaccds_device(camera, pilatus, tmp_path):
    seen = EventLog(camera, "cam_state")
    pilatus.Init()  # a new detector control: the camera device drives that one
    wait_until(lambda: label(pilatus.acq_status) == "Ready", 10, message="the LimaCCDs device back")
    assert camera.state() == tango.DevState.ON
    camera.threshold = 8200
    assert label(pilatus.acq_status) == "Configuration"
    wait_until(lambda: seen[-2:] == ["SETTING_THRESHOLD", "STANDBY"], 10, message=lambda: f"cam_state events {seen}")
    assert camera.threshold == 8200
