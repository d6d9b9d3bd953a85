"""The Pilatus follows other devices: the sample axis (frames show a peak) and the pulse counter
(one frame per pulse). A fake motion server stands in for the controller so that pulses and
positions are exact; test_gated_by_aerotech.py does the same against the real Automation1 server."""

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from tango_servers.stack.waiting import wait_until

DATA = "/entry_0000/measurement/data"
DEVICE, AXIS, PSO = "sim/pilatus/1", "sim/aerotech/omega", "sim/aerotech/ctrl"


def wait_ready(proxy, timeout=10.0):
    wait_until(lambda: proxy.acq_status == "Ready", timeout, message="acq_status Ready")


def pulse_counted(pso, pilatus) -> bool:
    """Send one pulse and give the Pilatus a second to count it."""
    pso.Pulses(1)
    try:
        wait_until(lambda: pilatus.trigger_pulses > 0, 1.0, message="the pulse counted")
    except TimeoutError:
        return False
    return True


def move(axis, pilatus, position):
    axis.position = position
    wait_until(lambda: pilatus.sample_position == position, 5, message=f"Pilatus to see the axis at {position}")


def test_scan_over_the_sample_axis_shows_the_peak(pilatus, axis, tmp_path):
    positions = [-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0]  # peak_position 0, peak_width 1
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER_MULTI"
    pilatus.acq_nb_frames = len(positions)
    pilatus.roi = [0, 0, 0, 0]  # the whole frame
    pilatus.prepareAcq()
    roi_sums = []
    for i, position in enumerate(positions):
        move(axis, pilatus, position)
        pilatus.startAcq()  # IntTrigMult: one frame per startAcq
        wait_until(lambda i=i: pilatus.last_image_saved == i, 5, message=f"frame {i}")
        roi_sums.append(pilatus.roi_sum)
    wait_ready(pilatus)
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        frames = f[DATA][:]
    counts = np.clip(frames, 0, None).sum(axis=(1, 2)).astype(float)
    assert roi_sums == counts.tolist()  # the scalar a step scan records is the frame's total
    pilatus.roi = [10, 20, 30, 40]
    assert pilatus.roi_sum == np.clip(frames[-1, 20:60, 10:40], 0, None).sum()
    signal = counts - counts.min()
    assert positions[int(np.argmax(counts))] == 0.0
    assert signal[0] < 0.05 * signal.max() and signal[-1] < 0.05 * signal.max()
    # Gaussian in the position: at one sigma the spots carry exp(-1/2) of their peak counts.
    assert signal[2] / signal[4] == pytest.approx(np.exp(-0.5), rel=0.15)


@pytest.mark.parametrize("mode", ["EXTERNAL_GATE", "EXTERNAL_TRIGGER_MULTI", "EXTERNAL_TRIGGER"])
def test_one_frame_per_pulse(pilatus, pso, tmp_path, mode):
    pso.Pulses(3)  # before the acquisition: ignored
    pilatus.acq_trigger_mode = mode
    pilatus.acq_nb_frames = 20
    pilatus.prepareAcq()
    pilatus.startAcq()
    assert pilatus.ready_for_next_image
    pso.Pulses(7)
    wait_until(lambda: pilatus.last_image_saved == 6, 5, message="7 frames for 7 pulses")
    pso.ResetCount()  # e.g. PsoArm resets the counter: counting goes on from the new value
    pso.Pulses(13)
    wait_ready(pilatus)
    pso.Pulses(5)  # after the last frame: none invented
    assert pilatus.last_image_saved == 19
    assert pilatus.trigger_pulses == 20
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        assert f[DATA].shape[0] == 20
        assert f["/entry_0000/instrument/Pilatus/trigger_source"][()] == f"{PSO}/pso_pulse_count".encode()


def test_fewer_pulses_then_stop(pilatus, pso, tmp_path):
    pilatus.acq_trigger_mode = "EXTERNAL_GATE"
    pilatus.acq_nb_frames = 10
    pilatus.prepareAcq()
    pilatus.startAcq()
    pso.Pulses(4)
    wait_until(lambda: pilatus.last_image_saved == 3, 5, message="4 frames")
    pilatus.stopAcq()
    wait_ready(pilatus)
    with h5py.File(tmp_path / "scan_0000.h5", "r") as f:
        assert f[DATA].shape[0] == 4


def test_following_survives_restarts(make_stack, configs, reset_pilatus, tmp_path):
    """Kill the pulse source and then the Pilatus: each comes back and the counting is exact."""
    running = make_stack(configs.with_fake_motion(configs.pilatus()), **configs.options)
    for position, name in ((1.25, "FakeMotion/test"), (-0.75, "Pilatus/test")):
        running.wait_server_back(name, running.kill_server(name))
        pilatus, pso, axis = running.proxy(DEVICE), running.proxy(PSO), running.proxy(AXIS)

        def following(position=position, axis=axis, pilatus=pilatus) -> bool:
            axis.position = position
            return pilatus.sample_position == position

        # Following resumes once the stateless subscription reconnects (Tango retries every ~10 s).
        wait_until(following, 40, interval=0.5, message=f"the axis followed again after restarting {name}")
        reset_pilatus(pilatus, tmp_path)
        pilatus.saving_prefix = name.split("/")[0]
        pilatus.acq_trigger_mode = "EXTERNAL_GATE"
        pilatus.acq_nb_frames = 6
        pilatus.prepareAcq()
        pilatus.startAcq()
        # The pulse counter's subscription reconnects on its own, maybe after the position's:
        # a pulse sent before that is not counted (never invented), so send one until one counts.
        wait_until(
            lambda pso=pso, pilatus=pilatus: pulse_counted(pso, pilatus), 40, interval=0, message="a pulse counted"
        )
        pso.Pulses(6 - pilatus.trigger_pulses)
        wait_ready(pilatus)
        assert pilatus.trigger_pulses == 6
        assert pilatus.last_image_saved == 5
