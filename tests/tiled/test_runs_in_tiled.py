"""Runs kept in a real Tiled server started by the stack: a count, a scan over omega reading the
Pilatus and a 1000-point fly scan, each read back by uid with the frames of the detector's HDF5
file, and found again by plan name. One stack (Automation1 as shipped, a small Pilatus) per module."""

import threading
import time

import h5py
import hdf5plugin  # noqa: F401  (HDF5BS frames)
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from tiled.queries import Key

from ophyd_tango import TangoDevice
from ophyd_tango.plans import fly_scan
from tango_servers.stack import cli
from tango_servers.stack.kept_runs import keep_runs, tiled_client
from tango_servers.stack.status import stack_status
from tango_servers.stack.testing import shipped_servers, small_pilatus, start_stack
from tango_servers.stack.waiting import wait_until

IMAGE_KEY = "pilatus_image"


@pytest.fixture(scope="module")
def tiled_stack(tmp_path_factory):
    config = {"servers": {**shipped_servers("Automation1"), **small_pilatus("tiled")}}
    running = start_stack(tmp_path_factory.mktemp("tiled-stack"), config=config, redis=False, bridges=False, tiled=True)
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def devices(tiled_stack):
    return {
        "omega": TangoDevice(tiled_stack.trl("sim/aerotech/omega"), name="omega"),
        "pilatus": TangoDevice(tiled_stack.trl("sim/pilatus/1"), name="pilatus"),
    }


@pytest.fixture(scope="module")
def client(tiled_stack):
    return tiled_client(tiled_stack.tiled)


@pytest.fixture
def run_kept(tiled_stack):
    """run_kept(plan) -> (uid, documents, arrivals): the plan run on a RunEngine whose runs are kept
    in Tiled; arrivals are (document name, wall-clock time the RunEngine emitted it)."""

    def run_kept(plan):
        run_engine = RunEngine({}, context_managers=[])
        documents = []
        run_engine.subscribe(lambda name, doc: documents.append((name, doc, time.time())))
        keeper = keep_runs(run_engine, tiled_stack.tiled)
        (uid,) = run_engine(plan)
        assert not keeper.told, "Tiled did not take the run"
        return uid, [(name, doc) for name, doc, _ in documents], [(name, at) for name, _, at in documents]

    return run_kept


def hdf5_frames(documents) -> np.ndarray:
    (resource,) = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as f:
        return f[resource["parameters"]["dataset"]][()]


def test_the_stack_runs_tiled_as_a_component(tiled_stack):
    (row,) = [row for row in stack_status(tiled_stack.current) if row["server"] == "tiled"]
    assert row["status"] == "running" and row["pid"] and row["port"]
    key_file = tiled_stack.state_dir / "tiled" / "api_key"
    assert key_file.stat().st_mode & 0o077 == 0  # owner-only
    assert tiled_stack.tiled.uri == f"http://127.0.0.1:{row['port']}"


def test_env_prints_what_a_tiled_client_needs(tiled_stack, capsys):
    assert cli.main(["env", "--state-dir", str(tiled_stack.state_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"export TILED_URI={tiled_stack.tiled.uri}" in lines
    assert f"export TILED_API_KEY={tiled_stack.tiled.api_key}" in lines


def test_count_is_kept_with_its_frames(devices, client, run_kept):
    uid, documents, _ = run_kept(count([devices["pilatus"]], 3))
    run = client[uid]
    assert run.start["plan_name"] == "count"
    assert run.stop["exit_status"] == "success"
    np.testing.assert_array_equal(run["primary"][IMAGE_KEY].read(), hdf5_frames(documents))
    assert run["primary"][IMAGE_KEY].shape == (3, 67, 125)


def test_scan_over_omega_is_kept_with_positions_and_frames(devices, client, run_kept):
    uid, documents, _ = run_kept(scan([devices["pilatus"]], devices["omega"], -1.0, 1.0, 5))
    primary = client[uid]["primary"]
    np.testing.assert_allclose(primary["omega"].read(), np.linspace(-1.0, 1.0, 5), atol=1e-6)
    events = [doc for name, doc in documents if name == "event"]
    assert list(primary["pilatus_roi_sum"].read()) == [e["data"]["pilatus_roi_sum"] for e in events]
    np.testing.assert_array_equal(primary[IMAGE_KEY].read(), hdf5_frames(documents))


def test_fly_scan_of_1000_points_streams_and_is_kept_with_1000_frames(devices, client, run_kept):
    devices["omega"].set(0.0).wait(30)
    uid, documents, arrivals = run_kept(fly_scan([devices["pilatus"]], devices["omega"], 0.0, 10.0, 1000, 0.004))
    primary = client[uid]["primary"]
    first_datum = next(at for name, at in arrivals if name == "stream_datum")
    assert first_datum < primary["omega_pulse_time"].read()[-1], "StreamDatum streamed while flying"
    assert primary[IMAGE_KEY].shape == (1000, 67, 125)
    np.testing.assert_array_equal(primary["pilatus_frame"].read(), np.arange(1000))
    np.testing.assert_array_equal(primary[IMAGE_KEY].read(), hdf5_frames(documents))


def test_tiled_serves_fly_frames_before_the_fly_ends(devices, client, tiled_stack):
    """RunKeeper sends batches while the run goes on: frames are in Tiled before the stop document."""
    devices["omega"].set(0.0).wait(30)
    run_engine = RunEngine({}, context_managers=[])
    keep_runs(run_engine, tiled_stack.tiled)
    seen: dict = {}
    started = threading.Event()

    def note(name, doc):
        if name == "start":
            seen["uid"] = doc["uid"]
            started.set()
        elif name == "stop":
            seen["stop_at"] = time.time()

    def watch():
        started.wait(60)
        seen["frames"] = wait_until(
            lambda: client[seen["uid"]]["primary"][IMAGE_KEY].shape[0], 60, interval=0.05, message="frames in Tiled"
        )
        seen["at"] = time.time()

    run_engine.subscribe(note)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run_engine(fly_scan([devices["pilatus"]], devices["omega"], 0.0, 10.0, 1000, 0.004))
    watcher.join(60)
    assert 0 < seen["frames"] < 1000 and seen["at"] < seen["stop_at"], seen


def test_a_search_by_plan_name_finds_the_runs(devices, client, run_kept):
    uids = {plan_name: run_kept(plan)[0] for plan_name, plan in [
        ("count", count([devices["pilatus"]], 1)),
        ("scan", scan([devices["pilatus"]], devices["omega"], 0.0, 0.5, 2)),
        ("fly_scan", fly_scan([devices["pilatus"]], devices["omega"], 0.0, 0.5, 10, 0.005)),
    ]}  # fmt: skip
    for plan_name, uid in uids.items():
        found = client.search(Key("start.plan_name") == plan_name)
        assert uid in found, plan_name
        assert all(found[key].start["plan_name"] == plan_name for key in found)
