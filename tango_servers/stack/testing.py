"""Isolated stacks for tests, benchmarks and notebooks, started by the launcher `tango-suite up` uses.

running = start_stack(tmp_dir)                       # the shipped configuration
running = start_stack(tmp_dir, config={...},         # a dsconfig dict of your own
                      extra_servers={"Zoo": "/path/zoo.py:main"})
running.proxy("sim/aerotech/x").read_attribute("position")
running.down()
"""

import copy
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import tango

from .cli import stop_stack, wait_until_up
from .config import load_config
from .kept_runs import TiledSettings, tiled_settings
from .processes import LOOPBACK, free_port, started_by
from .state import StackState
from .supervisor import StackOptions, spawn_supervisor
from .waiting import wait_until

PROXY_TIMEOUT = 3.0
# A Pilatus small enough for fast tests: 2 x 2 modules of 60 x 30 pixels with gaps of 5 and 7,
# so module gaps are in the picture while frames stay tiny.
SMALL_PILATUS = {
    "backend": ["sim"],
    "detector_size": ["125", "67"],
    "module_size": ["60", "30"],
    "module_gap": ["5", "7"],
    "noise_bank_size": ["2"],
    "data_roots": [tempfile.gettempdir()],  # tests save into pytest's temporary directories
}


def shipped_servers(*servers: str) -> dict:
    """The named servers' blocks of the shipped configuration, copied for a test's own config."""
    shipped = load_config().document["servers"]
    return {server: copy.deepcopy(shipped[server]) for server in servers}


PILATUS_CAMERA = "sim/pilatus_cam/1"
"""The `Pilatus` (camera plugin) device next to the LimaCCDs device `sim/pilatus/1`."""


def small_pilatus(instance: str, **properties: list[str]) -> dict:
    """A `Pilatus/<instance>` server block with a small LimaCCDs `sim/pilatus/1` (alias pilatus)
    and its camera device `sim/pilatus_cam/1` (class Pilatus)."""
    device = {"alias": "pilatus", "properties": {**copy.deepcopy(SMALL_PILATUS), **properties}}
    return {
        "Pilatus": {
            instance: {"LimaCCDs": {"sim/pilatus/1": device}, "Pilatus": {PILATUS_CAMERA: {"alias": "pilatus_cam"}}}
        }
    }


@dataclass
class RunningStack:
    """A stack brought up for a test; everything it started is stopped by `down()`."""

    state: StackState

    @property
    def current(self) -> dict[str, Any]:
        return self.state.read() or {}

    @property
    def tango_host(self) -> str:
        return self.current["tango_host"]

    @property
    def state_dir(self) -> Path:
        return self.state.root

    @property
    def redis_url(self) -> str | None:
        return self.current.get("services", {}).get("redis_url")

    @property
    def pva(self) -> dict[str, str]:
        """EPICS_PVA_* client settings for the PVA bridge (empty when none runs)."""
        return self.current.get("services", {}).get("pva", {})

    @property
    def tiled(self) -> TiledSettings | None:
        """Where this stack keeps its runs (None when it runs without Tiled)."""
        return tiled_settings(self.current)

    def component(self, name: str) -> dict[str, Any]:
        for component in self.current.get("components", []):
            if component["name"] == name:
                return component
        raise KeyError(f"no component {name!r} in this stack")

    def proxy(self, device: str, timeout: float = PROXY_TIMEOUT) -> tango.DeviceProxy:
        proxy = tango.DeviceProxy(self.trl(device))
        proxy.set_timeout_millis(int(timeout * 1000))
        return proxy

    def trl(self, name: str) -> str:
        """Full Tango resource locator of a device or attribute on this stack's database."""
        return f"tango://{self.tango_host}/{name}"

    def server_pid(self, name: str) -> int:
        return self.component(name)["pid"]

    def kill_server(self, name: str) -> int:
        """SIGKILL a server (as a crash would); returns the PID killed. The supervisor restarts it."""
        pid = self.server_pid(name)
        assert started_by(pid, self.state.root), f"{name} (pid {pid}) is not ours"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_server_back(self, name: str, old_pid: int, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the supervisor has restarted `name` and its devices answer again."""

        def back() -> dict[str, Any] | None:
            component = self.component(name)
            return component if component["pid"] != old_pid and component["status"] == "running" else None

        return wait_until(back, timeout, interval=0.05, message=f"{name} to be restarted")

    def export_tango_host(self) -> None:
        """Point this process's default database at the stack (for code that uses TANGO_HOST)."""
        os.environ["TANGO_HOST"] = self.tango_host

    def down(self) -> None:
        current = self.state.read()
        if current is not None:
            stop_stack(self.state, current)


def start_stack(
    state_dir: Path,
    *,
    config: dict[str, Any] | None = None,
    extra_servers: dict[str, str] | None = None,
    redis: bool = True,
    bridges: bool = True,
    sardana: bool = False,
    tiled: bool = False,
    tiled_uri: str | None = None,
    pva_standard_ports: bool = False,
) -> RunningStack:
    """Bring up a stack on free loopback ports with its own state dir and sqlite database
    (Tiled only when asked: most tests keep no runs, and it costs seconds of start-up)."""
    state = StackState(Path(state_dir))
    state.ensure()
    config_path = None
    if config is not None:
        config_path = state.root / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
    options = StackOptions(
        state_dir=str(state.root),
        tango_host=f"{LOOPBACK}:{free_port()}",
        config_path=str(config_path) if config_path else None,
        redis=redis,
        bridges=bridges,
        extra_servers=dict(extra_servers or {}),
        sardana=sardana,
        tiled=tiled,
        tiled_uri=tiled_uri,
        pva_standard_ports=pva_standard_ports,
    )
    supervisor = spawn_supervisor(state, options)
    try:
        wait_until_up(state, supervisor, quiet=True)
    except Exception:
        stop_stack(state, state.read() or {})
        raise
    return RunningStack(state)


def drained(pubsub: Any, into: list, decode: Any = None) -> list:
    """Append the messages a redis-py PubSub has waiting to `into` (each through `decode`, when
    given) without blocking for more than 10 ms per message; returns `into`."""
    while (message := pubsub.get_message(timeout=0.01)) is not None:
        into.append(decode(message) if decode else message)
    return into


T = TypeVar("T")


class Collected(Generic[T]):
    """What callbacks on other threads (Tango events, PVA monitors, engine updates) hand over,
    kept in order and read safely from the test's thread."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._lock = threading.Lock()

    def append(self, item: T) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self, since: int = 0) -> list[T]:
        with self._lock:
            return self._items[since:]

    def latest(self) -> T | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def wait_for(self, predicate: Callable[[T], bool], message: str, timeout: float = 10.0, since: int = 0) -> T:
        """The first item (from the `since`-th on, old or new) for which `predicate` holds."""

        def found() -> tuple[T] | None:
            for item in self.snapshot(since):
                if not isinstance(item, Exception) and predicate(item):
                    return (item,)  # a 1-tuple: the item itself may be falsy (0, "")
            return None

        return wait_until(found, timeout, message=lambda: f"{message}; got {self.snapshot()[-5:]!r}")[0]
