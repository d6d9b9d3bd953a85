"""bluesky on the deployment: servers started by Starter, found with ophyd_tango.connect through the
C++ DataBaseds, a step scan and a PSO-gated fly scan of the small Pilatus."""

import pytest
from bluesky import RunEngine
from bluesky.plans import scan

from ophyd_tango import connect
from ophyd_tango.plans import fly_scan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def devices(facility, deployed, servers):
    for server in servers:  # in Starter's startup-level order
        facility.start_server(server)
    try:
        yield connect("sim/*/*", tango_host=facility.tango_host)
    finally:
        for server in reversed(servers):
            facility.stop_server(server)


def run(plan) -> list[tuple[str, dict]]:
    documents = []
    RunEngine({}, context_managers=[])(plan, lambda name, doc: documents.append((name, doc)))
    return documents


def stop_document(documents) -> dict:
    return next(doc for name, doc in documents if name == "stop")


def events(documents) -> list[dict]:
    return [doc for name, doc in documents if name == "event"]


def test_connect_finds_the_deployed_devices(devices) -> None:
    assert {"aerotech", "x", "y", "z", "omega", "pilatus"} <= set(devices)


def test_step_scan(devices) -> None:
    x = devices["x"]
    documents = run(scan([x], x, 0.0, 1.0, 3))
    assert stop_document(documents)["exit_status"] == "success"
    assert [round(e["data"]["x"], 6) for e in events(documents)] == [0.0, 0.5, 1.0]


def test_pso_gated_fly_scan(devices) -> None:
    x, pilatus = devices["x"], devices["pilatus"]
    documents = run(fly_scan([pilatus], x, 0.0, 1.0, 100, 0.004))
    assert stop_document(documents)["exit_status"] == "success", stop_document(documents)
    fly_events = events(documents)
    assert len(fly_events) == 100
    assert [e["data"]["pilatus_frame"] for e in fly_events] == list(range(100))
    assert fly_events[-1]["data"]["x"] == pytest.approx(1.0, abs=1e-6)
