"""The PVA bridge as `tango-suite up` runs it: the shipped configuration, exporting sim/*/*."""

import numpy as np
import pytest
from p4p.client.thread import Context

from tango_servers.stack.waiting import wait_until

BRIDGE = "sys/bridge/pva"


@pytest.fixture(scope="module")
def suite_pva(stack):
    if not stack.pva:
        pytest.skip("the default stack runs no PVA bridge")
    context = Context("pva", conf=dict(stack.pva), useenv=False)
    yield context
    context.close()


def pv_names(stack):
    return set(stack.proxy(BRIDGE).pv_names or ())


def test_bridge_exports_every_sim_device(stack, suite_pva):
    bridge = stack.proxy(BRIDGE)
    devices = ("SIM:AEROTECH:X", "SIM:PILATUS:1", "SIM:OAV:1")

    def all_exported():
        names = pv_names(stack)
        return all(any(name.startswith(device + ":") for name in names) for device in devices) and names

    names = wait_until(all_exported, 60.0, message=lambda: f"PVs of {devices}; bridge status: {bridge.status()}")
    assert not bridge.waiting_devices
    assert bridge.pv_count == len(names)
    assert not any(name.startswith(("SYS:BRIDGE:PVA", "DSERVER:")) for name in names)


def test_axis_position_carries_its_unit_and_state_is_an_enum(stack, suite_pva):
    position = suite_pva.get("SIM:AEROTECH:X:position", timeout=10.0)
    assert position.raw.getID() == "epics:nt/NTScalar:1.0"
    assert position.raw.display.units == stack.proxy("sim/aerotech/x").get_attribute_config("position").unit
    state = suite_pva.get("SIM:AEROTECH:X:State", timeout=10.0)
    assert state.raw.value.choices[int(state)] == str(stack.proxy("sim/aerotech/x").state())


def test_oav_frames_arrive_as_ntndarray(stack, suite_pva):
    for name in ("SIM:OAV:1:image_jpeg", "SIM:OAV:1:video_last_image"):
        frame = suite_pva.get(name, timeout=10.0)
        assert frame.raw.getID() == "epics:nt/NTNDArray:1.0"
        assert frame.ndim in (2, 3) and frame.size > 0
        assert frame.severity == 0, frame.raw.alarm.message
    video = suite_pva.get("SIM:OAV:1:video_last_image", timeout=10.0)
    counter = stack.proxy("sim/oav/1").video_last_image_counter
    assert abs(video.raw.uniqueId - counter) <= 100  # the OAV's own frame number, not a bridge count
    assert np.asarray(video).dtype == np.uint8
