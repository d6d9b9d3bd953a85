"""The stack the notebooks run against: the shipped configuration with small detectors, the bridges,
Redis and, when installed, Sardana; one for all notebooks, started by the launcher `tango-suite up` uses."""

import importlib.util
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from tango_servers.stack.testing import RunningStack, start_stack

SARDANA = importlib.util.find_spec("sardana") is not None and importlib.util.find_spec("sardana_config") is not None

# Two Pilatus modules (487 x 407) and a 320 x 240 OAV: frames cheap to write, read back and bridge.
PILATUS_SMALL = {
    "detector_size": ["487", "407"],
    "module_size": ["487", "195"],
    "module_gap": ["7", "17"],
    "threshold_time": ["0.2"],
}
OAV_SMALL = {"sensor_width": ["320"], "sensor_height": ["240"]}


def notebook_stack_config() -> dict[str, Any]:
    """`tango_servers/stack/default_config.json` with the Pilatus and OAV made small."""
    text = resources.files("tango_servers.stack").joinpath("default_config.json").read_text()
    config = json.loads(text)
    servers = config["servers"]
    servers["Pilatus"]["sim"]["LimaCCDs"]["sim/pilatus/1"]["properties"].update(PILATUS_SMALL)
    servers["OAV"]["sim"]["OAV"]["sim/oav/1"]["properties"].update(OAV_SMALL)
    return config


@pytest.fixture(scope="module")
def notebook_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        tmp_path_factory.mktemp("notebook-stack"), config=notebook_stack_config(), sardana=SARDANA, tiled=True
    )
    try:
        yield running
    finally:
        running.down()
