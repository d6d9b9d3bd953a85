"""One stack with Sardana for this folder: our servers, then the Pool and MacroServer from the YAML.

Started by the same launcher `tango-suite up --sardana` runs (`start_stack(..., sardana=True)`),
without bridges or Redis, with a small Pilatus so frames are cheap to write and read back.
"""

from collections.abc import Iterator

import pytest

pytest.importorskip("sardana")
pytest.importorskip("sardana_config")

from tango_servers.sardana.door import Door
from tango_servers.stack.sardana import SardanaLayout, read_layout
from tango_servers.stack.testing import PILATUS_CAMERA, RunningStack, start_stack

AXES = {"x": "mm", "y": "mm", "z": "mm", "omega": "deg"}


def sardana_test_config() -> dict:
    """The devices the Sardana YAML names, with a 200 x 160 Pilatus (and its camera device) and a
    320 x 240 OAV."""
    axes = {
        f"sim/aerotech/{name}": {
            "properties": {"controller": ["sim/aerotech/ctrl"], "axis": [name.upper()], "units": [unit]}
        }
        for name, unit in AXES.items()
    }
    return {
        "servers": {
            "Automation1": {
                "sim": {
                    "Automation1Controller": {"sim/aerotech/ctrl": {"properties": {"backend": ["sim"]}}},
                    "Automation1Axis": axes,
                }
            },
            "Pilatus": {
                "sim": {
                    "LimaCCDs": {
                        "sim/pilatus/1": {
                            "properties": {
                                "backend": ["sim"],
                                "sample_axis": ["sim/aerotech/omega"],
                                "trigger_source": ["sim/aerotech/ctrl/pso_pulse_count"],
                                "detector_size": ["200", "160"],
                                "module_size": ["90", "70"],
                                "module_gap": ["7", "10"],
                                # Long enough that a move that did not wait would end inside it.
                                "threshold_time": ["1.0"],
                            }
                        }
                    },
                    "Pilatus": {PILATUS_CAMERA: {}},  # the camera plugin device (threshold, sensors)
                }
            },
            "OAV": {
                "sim": {
                    "OAV": {
                        "sim/oav/1": {
                            "properties": {
                                "backend": ["sim"],
                                "sensor_width": ["320"],
                                "sensor_height": ["240"],
                            }
                        }
                    }
                }
            },
        }
    }


@pytest.fixture(scope="session")
def sardana_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        tmp_path_factory.mktemp("sardana-stack"),
        config=sardana_test_config(),
        redis=False,
        bridges=False,
        sardana=True,
    )
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="session")
def layout(sardana_stack: RunningStack) -> SardanaLayout:
    return read_layout(sardana_stack.state_dir)


class DoorClients:
    """One Door client per MacroServer process. After a restart the old client is closed first:
    its stale subscriptions would otherwise swallow the new client's MacroStatus events."""

    def __init__(self, stack: RunningStack, door_name: str) -> None:
        self._stack = stack
        self._name = door_name
        self._pid: int | None = None
        self._client: Door | None = None

    def current(self) -> Door:
        pid = self._stack.server_pid("MacroServer/tango_suite")
        if self._client is None or pid != self._pid:
            self.close()
            self._client = Door(self._stack.trl(self._name), timeout=10.0)
            self._pid = pid
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@pytest.fixture(scope="session")
def doors(sardana_stack: RunningStack, layout: SardanaLayout) -> Iterator[DoorClients]:
    clients = DoorClients(sardana_stack, layout.door)
    try:
        yield clients
    finally:
        clients.close()


@pytest.fixture
def door(doors: DoorClients) -> Door:
    """The Door client for the MacroServer running now."""
    return doors.current()
