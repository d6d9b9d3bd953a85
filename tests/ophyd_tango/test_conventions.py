"""Devices we did not write, through the Tango database: a Sardana-style motor, a plain stage, a
LimaCCDs detector; roles from conventions, device properties and overrides; connect() names."""

import os
import re
import threading

import h5py
import pytest
from bluesky import RunEngine
from bluesky.plans import count

from ophyd_tango import MoveFailed, TangoDevice, TangoDeviceError, TangoTimeoutError, connect
from tango_servers.stack.waiting import wait_until


@pytest.fixture(scope="module")
def devices(test_stack):
    return connect("test/*/*", tango_host=test_stack.tango_host)


@pytest.fixture
def motor(devices):
    motor = devices["motor_1"]
    motor.commands.ClearFault()
    motor.signal("FaultAt").put(1e9)  # never
    motor.signal("IgnoreMoves").put(False)
    motor.signal("Velocity").put(20.0)
    motor.move(0.0, timeout=10)
    return motor


def test_connect_names_from_alias_and_member(devices, test_stack):
    assert set(devices) == {"zoo", "lima", "motor_1", "motor_2", "stage_1"}
    assert devices["zoo"].trl == f"tango://{test_stack.tango_host}/test/zoo/db"
    namespace = {}
    connect("test/stage/*", tango_host=test_stack.tango_host, into=namespace)
    assert list(namespace) == ["stage_1"]


def test_unknown_names_list_close_matches(test_stack):
    with pytest.raises(LookupError, match="test/motor/1"):
        connect("test/motr/1", tango_host=test_stack.tango_host)
    with pytest.raises(TangoDeviceError, match=r"did you mean test/motor/(1|2), test/motor/(1|2)\?"):
        TangoDevice(f"tango://{test_stack.tango_host}/test/motor/9")


def test_sardana_motor_by_convention(motor):
    roles = motor.roles
    assert roles.kind == "motor" and roles.sources["setpoint"] == "convention"
    assert roles.get("readback") == "Position" and roles.get("stop") == "Stop"
    assert motor.hints == {"fields": ["motor_1"]}
    assert set(motor.read_configuration()) == {
        "motor_1_velocity", "motor_1_acceleration", "motor_1_deceleration", "motor_1_offset"
    }  # fmt: skip
    assert motor.describe()["motor_1"]["units"] == "mm"


def test_move_with_progress(motor):
    progress, watched, readbacks = [], [], []
    motor.subscribe(lambda **kw: progress.append(kw), event_type="progress", run=False)
    motor.subscribe(lambda value, **kw: readbacks.append(value), event_type="readback", run=False)
    status = motor.set(5.0)
    status.watch(lambda **kw: watched.append(kw))
    assert status.device is motor  # tied to the device itself
    status.wait(10)
    assert status.success and motor.position == 5.0
    assert motor.locate() == {"setpoint": 5.0, "readback": 5.0}
    assert {k: progress[-1][k] for k in ("value", "max_value", "done")} == {"value": 1, "max_value": 1, "done": True}
    assert any(0 < p["value"] < 1 for p in progress)
    assert watched[-1]["fraction"] == 0.0
    assert any(w.get("target") == 5.0 and 0 < w["fraction"] < 1 for w in watched)
    assert len(readbacks) > 3


def test_stop_fails_the_move(motor):
    motor.signal("Velocity").put(5.0)
    status = motor.set(50.0)
    wait_until(lambda: motor.moving, 5, message="the motor to move")
    motor.stop()
    with pytest.raises(MoveFailed):
        status.wait(10)
    assert "stopped at" in str(status.exception())
    assert abs(motor.position) < 50


def test_fault_during_move(motor):
    motor.signal("FaultAt").put(2.0)
    status = motor.set(4.0)
    with pytest.raises(MoveFailed):
        status.wait(10)
    assert isinstance(status.exception(), MoveFailed)
    assert "FAULT" in str(status.exception()) and "faulted at" in str(status.exception())


def test_rejected_and_wrong_writes(motor):
    status = motor.set(1000.0)
    with pytest.raises(MoveFailed):
        status.wait(5)
    assert "API_WAttrOutsideLimit" in str(status.exception())
    with pytest.raises(TypeError, match="takes a number"):
        motor.set("far")


def test_timeout_derived_from_the_move(motor):
    motor.signal("IgnoreMoves").put(True)  # accepts the setpoint, never moves, never says MOVING
    status = motor.set(3.0)
    with pytest.raises(MoveFailed):
        status.wait(10)
    assert isinstance(status.exception(), MoveFailed) and "not reached" in str(status.exception())
    motor.signal("IgnoreMoves").put(False)
    motor.signal("Velocity").put(1.0)
    status = motor.set(30.0, timeout=0.5)
    with pytest.raises(TangoTimeoutError):
        status.wait(10)
    assert isinstance(status.exception(), TangoTimeoutError)
    wait_until(lambda: not motor.moving, 5, message="the stop sent after the timeout")


def test_roles_from_device_property(devices):
    motor = devices["motor_2"]
    assert motor.roles.sources["tolerance"] == "server"
    assert motor._move.tolerance() == 0.5


def test_plain_stage_with_writable_position(devices):
    stage = devices["stage_1"]
    assert stage.roles.kind == "motor" and stage.roles.sources["readback"] == "convention"
    stage.move(-1.5, timeout=10)
    assert stage.position == -1.5
    assert stage.position_attr.get() == -1.5  # the Tango attribute `position` as a signal


def test_lima_count_writes_stream_documents(devices, tmp_path, validate_documents):
    lima = devices["lima"]
    assert lima.roles.kind == "detector" and lima.roles.get("trigger") == "startAcq"
    lima.signal("saving_directory").put(str(tmp_path))
    lima.signal("acq_trigger_mode").put("INTERNAL_TRIGGER")
    lima.signal("acq_nb_frames").put(5)
    lima.signal("saving_prefix").put("left_by_another_client_")
    lima.signal("saving_next_number").put(7)
    documents = []
    RE = RunEngine({})
    RE(count([lima], 3), lambda name, doc: documents.append((name, doc)))
    validate_documents(documents)
    names = [name for name, _ in documents]
    assert names.count("stream_resource") == 1 and names.count("stream_datum") == 3
    resource = next(doc for name, doc in documents if name == "stream_resource")
    path = resource["uri"].removeprefix("file://localhost")
    # The run names its own file instead of continuing another client's series.
    assert re.fullmatch(r"lima_\d{8}-\d{6}-[0-9a-f]{6}_0000\.h5", os.path.basename(path))
    with h5py.File(path, "r") as f:
        data = f[resource["parameters"]["dataset"]]
        assert data.shape == (3, 6, 8)
        assert [int(data[i, 0, 0]) for i in range(3)] == [0, 1, 2]
    descriptor = next(doc for name, doc in documents if name == "descriptor")
    key = descriptor["data_keys"]["lima_image"]
    assert key["external"] == "STREAM:" and key["shape"] == [6, 8] and key["dtype_numpy"] == "<u2"
    datums = [doc["indices"] for name, doc in documents if name == "stream_datum"]
    assert datums == [{"start": i, "stop": i + 1} for i in range(3)]
    # unstage restored what stage changed
    assert lima.signal("acq_trigger_mode").get() == "INTERNAL_TRIGGER"
    assert lima.signal("acq_nb_frames").get() == 5
    assert lima.signal("saving_prefix").get() == "left_by_another_client_"
    assert lima.signal("saving_next_number").get() == 7
    assert lima.signal("acq_status").get() == "Ready"


def test_lima_trigger_without_stage(devices, tmp_path):
    lima = devices["lima"]
    lima.signal("saving_directory").put(str(tmp_path))
    lima.trigger().wait(10)
    assert lima.signal("last_image_saved").get() == 0
    assert lima.signal("acq_status").get() == "Ready"


def test_subscriptions_deliver_from_other_threads(devices):
    zoo = devices["zoo"]
    seen = threading.Event()
    zoo.ticks.subscribe(lambda value, **kw: seen.set(), run=False)
    zoo.Tick()
    assert seen.wait(5)


def test_lima_pause_and_resume_keeps_one_frame_per_event(devices, tmp_path, validate_documents):
    import bluesky.plan_stubs as bps
    from bluesky.utils import RunEngineInterrupted

    lima = devices["lima"]
    lima.signal("saving_directory").put(str(tmp_path))
    RE = RunEngine({})
    documents = []
    paused = []

    def per_shot(detectors, take_reading=bps.trigger_and_read):
        yield from bps.checkpoint()
        yield from take_reading(detectors)
        if not paused:
            paused.append(True)
            yield from bps.pause()

    with pytest.raises(RunEngineInterrupted):
        RE(count([lima], 3, per_shot=per_shot), lambda name, doc: documents.append((name, doc)))
    assert RE.state == "paused"
    RE.resume()
    validate_documents(documents)
    events = [doc for name, doc in documents if name == "event"]
    datums = [doc for name, doc in documents if name == "stream_datum"]
    assert len(events) == len(datums) >= 3
    rows = [d["indices"]["start"] for d in datums]
    assert rows == sorted(rows) and all(d["indices"]["stop"] == d["indices"]["start"] + 1 for d in datums)
    assert lima.signal("acq_status").get() == "Ready"
