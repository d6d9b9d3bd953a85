"""Fly scans: the Automation1 PSO gates a small Pilatus, driven by ophyd_tango.plans.fly_scan.

One stack per module (Automation1 as shipped, a small-geometry Pilatus following its pulse
counter); every document is validated against event-model's schemas."""

import contextlib
import threading
import time

import h5py
import hdf5plugin  # noqa: F401  (HDF5BS frames)
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus, ProgressBarManager, RunEngineInterrupted

from ophyd_tango import PsoFlyer, TangoDevice
from ophyd_tango.plans import fly_scan, flyer_for
from tango_servers.stack.testing import shipped_servers, small_pilatus, start_stack
from tango_servers.stack.waiting import wait_until


def fly_config() -> dict:
    return {"servers": {**shipped_servers("Automation1"), **small_pilatus("fly")}}


@pytest.fixture(scope="module")
def fly_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("fly-stack"), config=fly_config(), redis=False, bridges=False)
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def devices(fly_stack):
    trl = fly_stack.trl
    return {
        "x": TangoDevice(trl("sim/aerotech/x"), name="x"),
        "pilatus": TangoDevice(trl("sim/pilatus/1"), name="pilatus"),
        "ctrl": fly_stack.proxy("sim/aerotech/ctrl"),
    }


@pytest.fixture
def run(validate_documents):
    """run(plan, interrupt=None) -> (documents, progress updates); documents are validated."""

    def run(plan, interrupt=None):
        RE = RunEngine({}, context_managers=[])
        progress = []

        bars = ProgressBarManager()  # what users see; must cope with our statuses

        def waiting_hook(statuses):
            bars(statuses)
            for status in statuses or ():
                if hasattr(status, "watch"):
                    status.watch(lambda **kw: progress.append(kw))

        RE.waiting_hook = waiting_hook
        documents = []
        if interrupt is not None:
            threading.Thread(target=interrupt, args=(RE,), daemon=True).start()
        with contextlib.suppress(RunEngineInterrupted, FailedStatus):  # the stop document says why
            RE(plan, lambda name, doc: documents.append((name, doc)))
        validate_documents(documents)
        return documents, progress

    return run


def _docs(documents, name):
    return [doc for n, doc in documents if n == name]


def test_fly_scan_1000_points_at_250_per_second(devices, run):
    x, pilatus = devices["x"], devices["pilatus"]
    velocity = x.signal("velocity").get()
    documents, progress = run(fly_scan([pilatus], x, 0.0, 10.0, 1000, 0.004))

    stop = _docs(documents, "stop")[0]
    assert stop["exit_status"] == "success", stop
    events = _docs(documents, "event")
    assert len(events) == 1000
    positions = np.array([e["data"]["x"] for e in events])
    times = np.array([e["data"]["x_pulse_time"] for e in events])
    assert np.all(np.diff(positions) > 0)
    np.testing.assert_allclose(np.diff(positions), 0.01, atol=1e-6)
    np.testing.assert_allclose(positions[[0, -1]], [0.01, 10.0], atol=1e-6)
    assert 999 / (times[-1] - times[0]) >= 200.0  # pulse times are the simulator's exact crossing times
    assert [e["data"]["pilatus_frame"] for e in events] == list(range(1000))

    resources, datums = _docs(documents, "stream_resource"), _docs(documents, "stream_datum")
    assert len(resources) == 1
    covered = sorted(i for d in datums for i in range(d["indices"]["start"], d["indices"]["stop"]))
    assert covered == list(range(1000))
    assert sorted(d["seq_nums"]["start"] for d in datums) == list(range(1, 1001))
    path = resources[0]["uri"].removeprefix("file://localhost")
    with h5py.File(path, "r") as f:  # closed: readable without SWMR
        assert f[resources[0]["parameters"]["dataset"]].shape == (1000, 67, 125)

    assert pilatus.signal("acq_status").get() == "Ready"
    assert x.signal("velocity").get() == pytest.approx(velocity)  # restored at unstage
    assert not devices["ctrl"].pso_armed
    pulses = [p for p in progress if p.get("unit") == "pulses"]
    assert pulses and pulses[-1]["current"] == 1000 and pulses[-1]["target"] == 1000


def test_bec_order_and_a_staged_bystander(devices):
    """stage -> configure -> kickoff -> complete -> complete -> unstage; a flyer staged without
    taking part changes nothing."""
    x, pilatus = devices["x"], devices["pilatus"]
    pso, det = flyer_for(x), flyer_for(pilatus)
    x.set(0.0).wait(30)
    progress = []
    pso.subscribe(lambda **kw: progress.append(kw), event_type="progress", run=False)
    for flyer in (det, pso):
        flyer.stage()
    det.configure({"num": 50, "exposure": 0.005})
    pso.configure({"start": 0.0, "stop": 1.0, "num": 50, "exposure": 0.005})
    det.kickoff().wait(10)
    pso.kickoff().wait(30)
    first, again = pso.complete(), pso.complete()
    assert first is again
    first.wait(30)
    det.complete().wait(30)
    det.complete().wait(1)
    for flyer in (det, pso):
        flyer.unstage()
    assert pilatus.signal("last_image_saved").get() == 49
    assert progress[-1]["value"] == 50 and progress[-1]["max_value"] == 50 and progress[-1]["done"]

    bystander = flyer_for(devices["pilatus"])
    bystander.configure({"num": 0})
    bystander.stage()
    assert bystander.complete().done
    bystander.unstage()
    assert pilatus.signal("acq_status").get() == "Ready"


@pytest.mark.parametrize("how", ["abort", "stop"])
def test_interrupt_mid_fly_leaves_everything_safe(devices, run, how):
    x, pilatus, ctrl = devices["x"], devices["pilatus"], devices["ctrl"]
    x.set(0.0).wait(30)

    def interrupt(RE):
        wait_until(lambda: ctrl.pso_armed and ctrl.pso_pulse_count >= 200, 30, message="no pulses")
        getattr(RE, how)()

    documents, _ = run(fly_scan([pilatus], x, 0.0, 10.0, 1000, 0.004), interrupt=interrupt)
    stop = _docs(documents, "stop")[0]
    assert stop["exit_status"] == ("abort" if how == "abort" else "success")
    assert not ctrl.pso_armed
    assert str(x.proxy.state()) != "MOVING"  # read now: the flyer's unstage waited for the stop
    assert x.signal("position").get() < 10.0
    assert pilatus.signal("acq_status").get() == "Ready"
    event = pilatus.signal("file_event").get()
    path = __import__("json").loads(event)["file_path"]
    with h5py.File(path, "r") as f:  # closed cleanly
        frames = f["/entry_0000/measurement/data"].shape[0]
    assert 200 <= frames < 1000


@pytest.mark.parametrize("server, device", [("Automation1/sim", "sim/aerotech/ctrl"), ("Pilatus/fly", "sim/pilatus/1")])
def test_server_killed_mid_fly_fails_the_run_naming_the_device(fly_stack, devices, run, server, device):
    x, pilatus, ctrl = devices["x"], devices["pilatus"], devices["ctrl"]
    wait_until(lambda: fly_stack.component(server)["status"] == "running", 60, message=f"{server} not running")
    x.set(0.0).wait(30)
    velocity = x.signal("velocity").get()
    killed = {}

    def kill(RE):
        wait_until(lambda: ctrl.pso_armed and ctrl.pso_pulse_count >= 100, 30, message="no pulses")
        killed["pid"] = fly_stack.kill_server(server)
        killed["at"] = time.time()

    documents, _ = run(fly_scan([pilatus], x, 0.0, 10.0, 1000, 0.004), interrupt=kill)
    stop = _docs(documents, "stop")[0]
    assert stop["exit_status"] == "fail"
    assert device in stop["reason"], stop["reason"]
    assert stop["time"] - killed["at"] < 5.0
    fly_stack.wait_server_back(server, killed["pid"])
    wait_until(lambda: str(x.proxy.state()) != "MOVING", 30, message="axis at rest after the restart")
    documents, _ = run(fly_scan([pilatus], x, 0.0, 0.5, 50, 0.004))  # the stack flies again
    assert _docs(documents, "stop")[0]["exit_status"] == "success"
    assert x.signal("velocity").get() == pytest.approx(velocity)  # the user's, even after a restart


PROGRAM = """
PsoDistance(X, 0.05)
PsoWindow(X, -100, 100)
PsoArm()
MoveAbsolute([X], [1], [5])
WaitForInPosition([X])
"""


def test_program_flyer_with_detector_in_external_trigger(devices):
    """A controller program drives the motion and the PSO; the Pilatus in EXTERNAL_TRIGGER."""
    x, pilatus = devices["x"], devices["pilatus"]
    pso, det = flyer_for(x), flyer_for(pilatus)
    x.set(0.0).wait(30)
    for flyer in (det, pso):
        flyer.stage()
    try:
        det.configure({"num": 20, "exposure": 0.005, "trigger_mode": "EXTERNAL_TRIGGER"})
        pso.configure({"program": PROGRAM, "num": 20, "timeout": 30})
        det.kickoff().wait(10)
        assert pilatus.signal("acq_trigger_mode").get() == "EXTERNAL_TRIGGER"
        pso.kickoff().wait(10)
        pso.complete().wait(30)
        det.complete().wait(30)
    finally:
        for flyer in (det, pso):
            flyer.unstage()
    assert pilatus.signal("last_image_saved").get() == 19
    assert pso.captured()["positions"] == pytest.approx([0.05 * k for k in range(1, 21)], abs=1e-6)
    assert pilatus.signal("acq_trigger_mode").get() != "EXTERNAL_TRIGGER"  # restored at unstage


def test_frames_missing_fail_the_detector_complete(devices):
    """Fewer pulses than frames requested: complete() fails naming the device and the counts."""
    x, pilatus = devices["x"], devices["pilatus"]
    pso, det = flyer_for(x), flyer_for(pilatus)
    x.set(0.0).wait(30)
    for flyer in (det, pso):
        flyer.stage()
    try:
        det.configure({"num": 30, "exposure": 0.005, "timeout": 3})
        pso.configure({"start": 0.0, "stop": 1.0, "num": 20, "exposure": 0.005})
        det.kickoff().wait(10)
        pso.kickoff().wait(30)
        pso.complete().wait(30)
        status = det.complete()
        with pytest.raises(Exception, match="sim/pilatus/1"):
            status.wait(10)
        assert "20 of 30 frames" in str(status) or "not finished" in str(status)
    finally:
        for flyer in (det, pso):
            flyer.unstage()
    assert pilatus.signal("acq_status").get() == "Ready"


def test_frames_over_several_files(devices, run):
    """saving_frame_per_file = 7: frame i is row i % 7 of file i // 7; StreamDatum follow the files."""
    x, pilatus = devices["x"], devices["pilatus"]
    per_file = pilatus.signal("saving_frame_per_file")
    before = per_file.get()
    per_file.put(7)
    try:
        documents, _ = run(fly_scan([pilatus], x, 0.0, 1.0, 100, 0.004))
    finally:
        per_file.put(before)
    assert _docs(documents, "stop")[0]["exit_status"] == "success"
    resources = {doc["uid"]: doc for doc in _docs(documents, "stream_resource")}
    datums = _docs(documents, "stream_datum")
    assert len(resources) == 15 and len(datums) == 100
    rows = [(resources[d["stream_resource"]]["uri"], d["indices"]["start"]) for d in datums]
    assert [row for _, row in rows] == [i % 7 for i in range(100)]
    assert len({uri for uri, _ in rows}) == 15
    for resource in resources.values():
        with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as f:
            assert f[resource["parameters"]["dataset"]].shape[0] in (7, 100 % 7)


def test_fly_backwards(devices, run):
    x, pilatus = devices["x"], devices["pilatus"]
    documents, _ = run(fly_scan([pilatus], x, 1.0, 0.0, 100, 0.004, md={"sample": "backwards"}))
    assert _docs(documents, "start")[0]["sample"] == "backwards"
    positions = [e["data"]["x"] for e in _docs(documents, "event")]
    assert positions == pytest.approx([1.0 - 0.01 * k for k in range(1, 101)], abs=1e-6)
    assert _docs(documents, "stop")[0]["exit_status"] == "success"


def test_pso_names_come_from_the_controller_roles(fly_stack, devices):
    """The flyer knows no PSO name of its own: it uses what the controller declares, and a
    controller without a needed role is refused, naming the device and the role."""
    pso = flyer_for(devices["x"])
    assert (pso.pso.arm, pso.pso.disarm, pso.pso.armed) == ("PsoArm", "PsoDisarm", "pso_armed")
    assert pso.controller.roles.sources["pso_arm"] == "server"
    trl = fly_stack.trl("sim/aerotech/ctrl")
    wrong = TangoDevice(trl, name="ctrl_wrong", pso_arm="NoSuchCommand")
    with pytest.raises(ValueError, match=r"sim/aerotech/ctrl: PSO role 'pso_arm' .*'NoSuchCommand' is not a command"):
        PsoFlyer(devices["x"], controller=wrong)
