"""Fixtures for the Pilatus tests: a small-geometry Pilatus on its own stack, shared by a module."""

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tango

from tango_servers.stack.testing import RunningStack, shipped_servers, small_pilatus, start_stack
from tango_servers.stack.waiting import wait_until

DEVICE = "sim/pilatus/1"
WIDTH, HEIGHT = 125, 67  # the small Pilatus of the test configuration


def pilatus_config(**properties: list[str]) -> dict[str, Any]:
    """A dsconfig document with one small Pilatus; `properties` override or add device properties."""
    return {"servers": small_pilatus("test", **{"threshold_time": ["0.6"], **properties})}


def aerotech_available() -> bool:
    return importlib.util.find_spec("tango_servers.aerotech.device") is not None


def with_aerotech(config: dict[str, Any]) -> dict[str, Any]:
    """`config` plus the shipped Automation1 server (controller and axes), started first."""
    return {"servers": {**shipped_servers("Automation1"), **config["servers"]}}


FAKE_MOTION = f"{Path(__file__).with_name('fake_motion_server.py')}:main"
AXIS = "sim/aerotech/omega"
PSO = "sim/aerotech/ctrl"


def with_fake_motion(config: dict[str, Any]) -> dict[str, Any]:
    """`config` plus a fake axis (sim/aerotech/omega) and pulse counter (sim/aerotech/ctrl), started
    after the Pilatus so that following them cannot depend on start order."""
    fake = {"test": {"FakeAxis": {AXIS: {}}, "FakePso": {PSO: {}}}}
    return {"servers": {**config["servers"], "FakeMotion": fake}}


def start_pilatus_stack(state_dir: Path, config: dict[str, Any]) -> RunningStack:
    return start_stack(state_dir, config=config, **Configs.options)


@pytest.fixture(scope="session")
def pilatus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A small Pilatus following the fake axis and pulse counter (default property values)."""
    running = start_pilatus_stack(tmp_path_factory.mktemp("pilatus-stack"), with_fake_motion(pilatus_config()))
    try:
        yield running
    finally:
        running.down()


class Configs:
    """Config builders for tests that start their own stack with `make_stack(**configs.options)`."""

    pilatus = staticmethod(pilatus_config)
    with_fake_motion = staticmethod(with_fake_motion)
    with_aerotech = staticmethod(with_aerotech)
    aerotech_available = staticmethod(aerotech_available)
    options = {"redis": False, "bridges": False, "extra_servers": {"FakeMotion": FAKE_MOTION}}


@pytest.fixture
def configs() -> type[Configs]:
    return Configs


@pytest.fixture
def reset_pilatus() -> Callable[[tango.DeviceProxy, Path], None]:
    """Abort whatever runs and restore the test settings, saving into the given directory."""
    return reset


@pytest.fixture
def axis(pilatus_stack: RunningStack) -> Iterator[tango.DeviceProxy]:
    proxy = pilatus_stack.proxy(AXIS)
    yield proxy
    proxy.position = 0.0


@pytest.fixture
def pso(pilatus_stack: RunningStack) -> tango.DeviceProxy:
    return pilatus_stack.proxy(PSO)


class EventLog(list):
    """Values of the change events of one attribute, in arrival order (errors in `.errors`)."""

    def __init__(self, proxy: tango.DeviceProxy, attribute: str):
        super().__init__()
        self.errors: list[str] = []
        self.proxy = proxy  # the subscription lives as long as its proxy
        proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._push)

    def _push(self, event: tango.EventData) -> None:
        if event.err:
            self.errors.append(event.errors[0].desc)
        else:
            self.append(event.attr_value.value)


@pytest.fixture(scope="session")
def events(pilatus_stack: RunningStack) -> dict[str, EventLog]:
    """Live event logs of `acq_status`, `file_event` and `image_preview` of the shared device.

    Events pushed just after a subscription can be lost while ZMQ connects (the "slow joiner"),
    so this proves the channel live with short acquisitions before any test relies on it.
    """
    proxy = pilatus_stack.proxy(DEVICE)
    logs = {name: EventLog(proxy, name) for name in ("acq_status", "file_event", "image_preview")}

    def live() -> bool:
        logs["acq_status"].clear()
        proxy.saving_mode = "MANUAL"
        proxy.acq_nb_frames = 1
        proxy.prepareAcq()
        proxy.startAcq()
        wait_until(lambda: proxy.acq_status == "Ready", 10, message="a 1-frame acquisition")
        return "Running" in logs["acq_status"]

    wait_until(live, 30, message="acq_status events to arrive")
    proxy.saving_mode = "AUTO_FRAME"
    return logs


@pytest.fixture
def pilatus(pilatus_stack: RunningStack, events: dict[str, EventLog], tmp_path: Path) -> tango.DeviceProxy:
    """The device, idle, saving into this test's tmp_path with default settings."""
    proxy = pilatus_stack.proxy(DEVICE)
    reset(proxy, tmp_path)
    return proxy


def reset(proxy: tango.DeviceProxy, directory: Path) -> None:
    proxy.abortAcq()
    wait_until(lambda: proxy.acq_status in ("Ready", "Fault"), 10, message="Pilatus to be idle")
    settings = {
        "saving_directory": str(directory),
        "saving_index_format": "%04d",
        "saving_prefix": "scan_",
        "saving_next_number": 0,
        "saving_format": "HDF5BS",
        "saving_mode": "AUTO_FRAME",
        "saving_frame_per_file": 10000,
        "saving_overwrite_policy": "ABORT",
        "acq_trigger_mode": "INTERNAL_TRIGGER",
        "acq_nb_frames": 1,
        "acq_expo_time": 0.01,
        "latency_time": 0.0,
    }
    for name, value in settings.items():
        setattr(proxy, name, value)


@pytest.fixture(scope="session")
def steady_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A small Pilatus whose every frame is the same: one background realisation, no spots."""
    config = pilatus_config(noise_bank_size=["1"], peak_counts=["0"])
    running = start_pilatus_stack(tmp_path_factory.mktemp("steady-pilatus"), config)
    try:
        yield running
    finally:
        running.down()


STEADY_SETTINGS = {
    "image_bin": [1, 1],
    "image_bin_mode": "SUM",
    "image_flip": [False, False],
    "image_rotation": "NONE",
    "image_roi": [0, 0, 0, 0],
    "acq_mode": "SINGLE",
    "acc_time_mode": "LIVE",
    "acc_max_expo_time": 1.0,
    "acq_trigger_mode": "INTERNAL_TRIGGER",
    "acq_expo_time": 0.01,
    "latency_time": 0.0,
    "saving_prefix": "image_",
    "saving_format": "HDF5",  # first: it sets saving_suffix, and CBF takes one frame per file only
    "saving_frame_per_file": 10000,
    "saving_mode": "AUTO_FRAME",
    "saving_overwrite_policy": "ABORT",
    "beam_center_x": WIDTH / 2,
    "beam_center_y": HEIGHT / 2,
}


@pytest.fixture
def steady_pilatus(steady_stack: RunningStack, tmp_path: Path) -> Iterator[tango.DeviceProxy]:
    """The steady device, idle, without image operations, saving HDF5 into this test's tmp_path."""
    proxy = steady_stack.proxy(DEVICE)
    proxy.abortAcq()
    wait_until(lambda: proxy.acq_status in ("Ready", "Fault"), 10, message="Pilatus to be idle")
    proxy.write_attribute("saving_directory", str(tmp_path))
    for name, value in STEADY_SETTINGS.items():
        proxy.write_attribute(name, value)
    yield proxy
    proxy.abortAcq()
