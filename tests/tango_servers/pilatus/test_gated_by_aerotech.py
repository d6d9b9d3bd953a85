"""Gated by the real Automation1 server: N PSO pulses give N frames."""

import h5py
import hdf5plugin  # noqa: F401
import pytest

from tango_servers.stack.waiting import wait_until

DATA = "/entry/instrument/detector/data"


@pytest.fixture
def gated_stack(make_stack, configs):
    if not configs.aerotech_available():
        pytest.skip("the Automation1 server (tango_servers.aerotech.device) has not landed")
    running = make_stack(configs.with_aerotech(configs.pilatus()), **configs.options)
    return running


def test_pso_pulses_gate_one_frame_each(gated_stack, reset_pilatus, tmp_path):
    pilatus = gated_stack.proxy("sim/pilatus/1")
    ctrl = gated_stack.proxy("sim/aerotech/ctrl")
    x = gated_stack.proxy("sim/aerotech/x")
    reset_pilatus(pilatus, tmp_path)
    x.velocity = 10.0
    x.position = 0.0
    wait_until(lambda: x.state().name != "MOVING", 10, message="x at 0")

    pulses = 120
    ctrl.pso_axis = "X"
    ctrl.pso_distance = 0.05
    pilatus.acq_trigger_mode = "EXTERNAL_GATE"
    pilatus.acq_nb_frames = pulses
    pilatus.prepareAcq()
    pilatus.startAcq()
    ctrl.PsoArm()
    x.position = pulses * 0.05  # 6 mm at 10 mm/s: 200 pulses/s at cruise
    wait_until(lambda: x.state().name != "MOVING", 10, message="the fly move to end")
    ctrl.PsoDisarm()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="every gated frame saved")

    assert ctrl.pso_pulse_count == pulses
    assert pilatus.trigger_pulses == pulses
    assert pilatus.last_image_saved == pulses - 1
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        assert f[DATA].shape[0] == pulses
        assert f["/entry/instrument/detector/acquisition_mode"][()] == b"gated"
