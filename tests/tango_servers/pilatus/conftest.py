"""Fixtures for the Pilatus tests: a small-geometry Pilatus on its own stack, shared by a module."""

import copy
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tango

from tango_servers.stack.testing import RunningStack, start_stack
from tango_servers.stack.waiting import wait_until

DEVICE = "sim/pilatus/1"
# 2 x 2 modules of 60 x 30 pixels with gaps of 5 and 7: gaps are in the picture, frames stay tiny.
SMALL = {
    "backend": ["sim"],
    "detector_size": ["125", "67"],
    "module_size": ["60", "30"],
    "module_gap": ["5", "7"],
    "threshold_time": ["0.6"],
    "noise_bank_size": ["2"],
}


def pilatus_config(**properties: list[str]) -> dict[str, Any]:
    """A dsconfig document with one small Pilatus; `properties` override or add device properties."""
    props = {**copy.deepcopy(SMALL), **properties}
    return {"servers": {"Pilatus": {"test": {"Pilatus": {DEVICE: {"properties": props}}}}}}


def aerotech_available() -> bool:
    return importlib.util.find_spec("tango_servers.aerotech.device") is not None


def with_aerotech(config: dict[str, Any]) -> dict[str, Any]:
    """`config` plus the shipped Automation1 server (controller and axes), started first."""
    from tango_servers.stack.config import load_config

    shipped = load_config().document["servers"]
    return {"servers": {"Automation1": copy.deepcopy(shipped["Automation1"]), **config["servers"]}}


def start_pilatus_stack(state_dir: Path, config: dict[str, Any]) -> RunningStack:
    running = start_stack(state_dir, config=config, redis=False, bridges=False)
    running.export_tango_host()
    return running


@pytest.fixture(scope="module")
def pilatus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One small Pilatus (no axis, no trigger source) for the tests of a module."""
    running = start_pilatus_stack(
        tmp_path_factory.mktemp("pilatus-stack"), pilatus_config(sample_axis=[""], trigger_source=[""])
    )
    try:
        yield running
    finally:
        running.down()


@pytest.fixture
def pilatus(pilatus_stack: RunningStack, tmp_path: Path) -> tango.DeviceProxy:
    """The device, idle, saving into this test's tmp_path with default settings."""
    proxy = pilatus_stack.proxy(DEVICE)
    reset(proxy, tmp_path)
    return proxy


def reset(proxy: tango.DeviceProxy, directory: Path) -> None:
    proxy.abortAcq()
    wait_until(lambda: proxy.acq_status.name in ("Ready", "Fault"), 10, message="Pilatus to be idle")
    settings = {
        "saving_directory": str(directory),
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
        setattr(proxy, name, value)  # enum attributes accept their labels this way
