"""bluesky plans on the shipped stack (Aerotech axes, Pilatus, OAV) with BestEffortCallback;
every document is validated against event-model's schemas."""

import h5py
import hdf5plugin  # noqa: F401  (HDF5BS frames)
import pytest
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.plan_stubs import mv
from bluesky.plans import count, grid_scan, rel_scan, scan

from ophyd_tango import connect


@pytest.fixture(scope="module")
def devices(stack):
    devices = connect("sim/*/*", tango_host=stack.tango_host)
    pilatus = devices["pilatus"]
    exposure = pilatus.signal("acq_expo_time").get()
    pilatus.signal("acq_expo_time").put(0.01)
    yield devices
    pilatus.signal("acq_expo_time").put(exposure)


@pytest.fixture
def run(validate_documents, monkeypatch):
    """run(plan) -> documents, with BestEffortCallback subscribed; documents are validated."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    RE = RunEngine({})
    bec = BestEffortCallback()
    bec.disable_plots()
    RE.subscribe(bec)

    def run(plan):
        documents = []
        RE(plan, lambda name, doc: documents.append((name, doc)))
        if not documents:  # plans outside a run (mv) emit nothing
            return documents
        validate_documents(documents)
        stop = documents[-1][1]
        assert documents[-1][0] == "stop" and stop["exit_status"] == "success", stop
        return documents

    return run


def _events(documents):
    return [doc for name, doc in documents if name == "event"]


def test_devices_and_roles(devices):
    assert {"x", "y", "z", "omega", "aerotech", "pilatus", "oav"} <= set(devices)
    assert devices["omega"].roles.sources["readback"] == "server"
    assert devices["pilatus"].roles.writes_files
    assert devices["oav"].hints == {"fields": ["oav_image_counter"]}


def test_count_pilatus_streams_frames_to_its_file(devices, run):
    pilatus = devices["pilatus"]
    documents = run(count([pilatus], 3))
    resources = [doc for name, doc in documents if name == "stream_resource"]
    datums = [doc for name, doc in documents if name == "stream_datum"]
    assert len(resources) == 1 and len(datums) == 3
    assert [d["indices"] for d in datums] == [{"start": i, "stop": i + 1} for i in range(3)]
    path = resources[0]["uri"].removeprefix("file://localhost")
    with h5py.File(path, "r", swmr=True) as f:
        frames = f[resources[0]["parameters"]["dataset"]]
        assert frames.shape[0] == 3
        assert list(frames.shape[1:]) == resources[0]["parameters"]["chunk_shape"][1:]
    assert "pilatus_image" not in _events(documents)[0]["data"]
    assert pilatus.signal("acq_status").get() == "Ready"


def test_scan_omega_with_pilatus(devices, run):
    omega, pilatus = devices["omega"], devices["pilatus"]
    documents = run(scan([pilatus], omega, -1, 1, 3))
    events = _events(documents)
    assert [round(e["data"]["omega"], 4) for e in events] == [-1.0, 0.0, 1.0]
    assert [e["data"]["pilatus_last_image_saved"] for e in events] == [0, 1, 2]
    descriptor = next(doc for name, doc in documents if name == "descriptor")
    assert descriptor["data_keys"]["pilatus_image"]["external"] == "STREAM:"
    assert descriptor["data_keys"]["omega"]["units"] == "deg"


def test_rel_scan_x_with_oav(devices, run):
    x, oav = devices["x"], devices["oav"]
    start = x.position
    documents = run(rel_scan([oav], x, -0.1, 0.1, 3))
    events = _events(documents)
    assert [round(e["data"]["x"] - start, 4) for e in events] == [-0.1, 0.0, 0.1]
    image = events[0]["data"]["oav_image"]
    assert len(image) == oav.signal("image_height").get()
    assert abs(x.position - start) < 1e-6  # rel_scan returns to the start


def test_grid_scan_y_z(devices, run):
    y, z, oav = devices["y"], devices["z"], devices["oav"]
    documents = run(grid_scan([oav.image_counter, y, z], y, 0, 0.2, 2, z, 0, 0.2, 2))
    points = [(round(e["data"]["y"], 4), round(e["data"]["z"], 4)) for e in _events(documents)]
    assert sorted(points) == [(0.0, 0.0), (0.0, 0.2), (0.2, 0.0), (0.2, 0.2)]


def test_mv_and_count_axes(devices, run):
    x, y = devices["x"], devices["y"]
    assert run(mv(x, 0.25, y, -0.25)) == []
    assert (x.position, y.position) == (0.25, -0.25)
    documents = run(count([x, y, devices["aerotech"]], 2))
    assert _events(documents)[0]["data"]["x"] == 0.25
    run(mv(x, 0.0, y, 0.0))
