"""The Pilatus camera device (`sim/pilatus_cam/1`, class Pilatus) in Sardana.

Its threshold and energy are motors of sardana-tango's TangoAttrMotorController (used unchanged:
Moving while the attribute reads quality CHANGING, the slow threshold); its threshold, energy and
temperature/humidity are in every scan's pre-scan snapshot. Driven through the Door, as spock does.
"""

import numpy as np
import pytest
import tango

from tango_servers.stack.testing import PILATUS_CAMERA
from tango_servers.stack.waiting import wait_until

from .test_macros import scan_entry

THRESHOLD_EV = 8000  # the camera's threshold at start-up (the simulator's 8 keV)


def element(sardana_stack, alias: str) -> tango.DeviceProxy:
    """A Sardana element's device, by its alias on the stack's database."""
    database = tango.Database(*sardana_stack.tango_host.split(":"))
    proxy = tango.DeviceProxy(sardana_stack.trl(database.get_device_alias(alias)))
    proxy.set_timeout_millis(10_000)
    return proxy


@pytest.fixture
def camera(sardana_stack, door):
    """The camera device; its threshold is put back at 8000 eV through Sardana afterwards."""
    yield sardana_stack.proxy(PILATUS_CAMERA)
    door.run("mv", "pilatus_threshold", THRESHOLD_EV, timeout=60)


def test_mv_pilatus_threshold_waits_until_the_detector_has_set_it(sardana_stack, door, camera):
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    motor = element(sardana_stack, "pilatus_threshold")
    door.run("mv", "pilatus_threshold", 9000, timeout=60)
    # mv returned: the detector is done (it shows Configuration for threshold_time after the write).
    assert pilatus.acq_status == "Ready"
    assert camera.cam_state == "STANDBY"
    reading = camera.read_attribute("threshold")
    assert (reading.value, reading.quality) == (9000, tango.AttrQuality.ATTR_VALID)
    assert motor.state() == tango.DevState.ON
    assert motor.read_attribute("Position").value == 9000
    run = door.run("wm", "pilatus_threshold")
    assert "9000" in run.text, run.text


def test_mv_pilatus_energy_puts_the_threshold_at_half_of_it(sardana_stack, door, camera):
    door.run("mv", "pilatus_energy", 12.4, timeout=60)
    assert sardana_stack.proxy("sim/pilatus/1").acq_status == "Ready"
    assert camera.threshold == 6200
    assert camera.energy_threshold == pytest.approx(12.4, abs=1e-5)
    assert element(sardana_stack, "pilatus_energy").state() == tango.DevState.ON


def test_a_threshold_outside_the_camera_range_is_refused_before_anything_moves(sardana_stack, door, camera):
    run = door.run("mv", "pilatus_threshold", 100, timeout=60, check=False)
    assert "below the minimum authorized" in run.text, run.text
    assert camera.threshold == THRESHOLD_EV and camera.cam_state == "STANDBY"
    assert sardana_stack.proxy("sim/pilatus/1").acq_status == "Ready"


def test_a_threshold_refused_during_an_acquisition_ends_the_move_in_alarm(sardana_stack, door, camera):
    pilatus = sardana_stack.proxy("sim/pilatus/1")
    motor = element(sardana_stack, "pilatus_threshold")
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER"
    pilatus.acq_nb_frames = 0  # until stopAcq
    pilatus.acq_expo_time = 0.05
    pilatus.prepareAcq()
    pilatus.startAcq()
    try:
        run = door.run("mv", "pilatus_threshold", 9000, timeout=60, check=False)
        assert motor.state() == tango.DevState.ALARM, run.text
        assert "did not reach the desired position" in motor.status()
        assert camera.threshold == THRESHOLD_EV
    finally:
        pilatus.stopAcq()
        wait_until(lambda: pilatus.acq_status == "Ready", 10, message="the Pilatus Ready after stopAcq")
    door.run("mv", "pilatus_threshold", 9000, timeout=60)  # usable again once the detector is idle
    assert motor.state() == tango.DevState.ON and camera.threshold == 9000


def test_every_scan_records_the_camera_threshold_and_sensors(sardana_stack, door, layout):
    camera = sardana_stack.proxy(PILATUS_CAMERA)
    run = door.run("ascan", "omega", -0.5, 0.5, 1, 0.05, timeout=120)
    entry = scan_entry(run, layout)
    with entry.file:
        snapshot = entry["measurement/pre_scan_snapshot"]
        assert snapshot["pilatus_threshold"][()] == camera.threshold
        assert snapshot["pilatus_energy"][()] == pytest.approx(camera.energy_threshold)
        assert np.allclose(snapshot["pilatus_temperature_humidity"][:], camera.temperature_humidity)
