"""The client host's part of the multi-host test, run inside its network namespace.

    python cross_host_client.py SETTINGS.json   # written by test_hosts.py: hosts, servers, flags

Starts Automation1 and Pilatus through the hardware host's Starter and the Redis and PVA bridges
through the client host's, and flies. Cuts the hardware host's link (its bridge port in the database
host's namespace) mid-fly and mid step scan, and checks that a TCP connect to a server port of the
hardware host then fails, and that both bridges show the axis failing; restores the link, waits for
the bridges to show it valid again, and scans again with the same ophyd objects. Then, while the test
restarts the database host (flag files: it touches "db-down" and "db-up", this script
"ready-for-db-restart" and "read-while-db-down"), reads and flies with the same objects.
Prints one JSON line of outcomes and times (wall clock, s).
"""

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
import tango
from bluesky import RunEngine
from bluesky.plans import scan
from p4p.client.thread import Context

from bridges.pva.config import pv_name
from bridges.redis import DEFAULT_PREFIX, unpack
from ophyd_tango import connect
from ophyd_tango.plans import fly_scan
from tango_servers.stack.waiting import wait_until


def set_link(namespace: str, link: str, state: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", link, state], check=True, timeout=10)


def listening_address(namespace: str) -> tuple[str, int]:
    """One TCP address:port a server listens on in `namespace` (the hardware host)."""
    listing = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-Htln"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    local = next(line.split()[3] for line in listing.splitlines() if not line.split()[3].startswith("127."))
    address, _, port = local.rpartition(":")
    return address, int(port)


def reachable(where: tuple[str, int]) -> bool:
    """Whether a TCP connect to `where` completes within 1 s."""
    try:
        socket.create_connection(where, timeout=1).close()
    except OSError:
        return False
    return True


def outcome(documents: list[tuple[str, dict]], started: float) -> dict:
    """What a run ended with: exit status, reason, event count, start and stop times, and when the
    RunEngine returned (after the clean-up that follows the stop document)."""
    stop_doc = next(doc for name, doc in documents if name == "stop")
    return {
        "exit_status": stop_doc["exit_status"],
        "reason": stop_doc["reason"],
        "events": sum(name == "event" for name, _ in documents),
        "started": started,
        "stopped": stop_doc["time"],
        "returned": time.time(),
    }


def wait_answering(devices: dict, since: float) -> float:
    """Seconds from `since` until every device answers a read through its own ophyd object again:
    each proxy reconnects on its own (refusing for 1 s after a failed attempt), so one device
    answering says nothing of the others."""
    for device in devices.values():
        wait_until(lambda d=device: d.link.read(["State"]), 60, interval=0.05, message=f"{device.name} to answer")
    return time.time() - since


def fly(devices: dict, stop: float, num: int, during=None) -> dict:
    documents = []
    started = time.time()
    if during is not None:
        threading.Thread(target=during, daemon=True).start()
    with contextlib.suppress(Exception):  # the stop document says why
        RunEngine({}, context_managers=[])(
            fly_scan([devices["pilatus"]], devices["x"], 0.0, stop, num, 0.004),
            lambda name, doc: documents.append((name, doc)),
        )
    return outcome(documents, started)


def step_scan(devices: dict, num: int, cut_after: int | None = None, cut=None) -> dict:
    """A step scan of x; `cut()` runs once event `cut_after` is in (on the RunEngine's thread)."""
    documents = []
    cut_at = {}

    def collect(name: str, doc: dict) -> None:
        documents.append((name, doc))
        if name == "event" and doc["seq_num"] == cut_after and not cut_at:
            cut()
            cut_at["at"] = time.time()

    started = time.time()
    with contextlib.suppress(Exception):  # the stop document says why
        RunEngine({}, context_managers=[])(scan([devices["x"]], devices["x"], 0.0, 2.0, num), collect)
    return {
        **outcome(documents, started),
        "cut_at": cut_at.get("at"),
        "event_times": [doc["time"] for name, doc in documents if name == "event"],
        "x": [doc["data"]["x"] for name, doc in documents if name == "event"],
    }


class Bridges:
    """What the client host's bridges show for the axis position: its Redis entry and its PV."""

    DEVICE, ATTRIBUTE = "sim/aerotech/x", "position"

    def __init__(self, redis_url: str, pva: dict[str, str]) -> None:
        self.redis_url, self.pva_settings = redis_url, pva
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2.0)
        self.pva = Context("pva", conf=pva, useenv=False)
        self.key = f"{DEFAULT_PREFIX}{self.DEVICE}/{self.ATTRIBUTE}"
        self.pv = pv_name(self.DEVICE, self.ATTRIBUTE)

    def redis_entry(self) -> dict:
        raw = self.redis.get(self.key)
        return unpack(raw) if raw else {}

    def pv_severity(self) -> int:
        return int(self.pva.get(self.pv, timeout=2.0).severity)

    def shows(self, failing: bool) -> bool:
        """Both bridges show the device failing (Redis error, PV INVALID), or both show it valid."""
        entry = self.redis_entry()
        if failing:
            return bool(entry.get("error")) and self.pv_severity() == 3
        return bool(entry) and not entry.get("error") and self.pv_severity() == 0

    def wait_for(self, failing: bool, since: float) -> float:
        """Seconds from `since` until both bridges show the device failing (or valid again)."""
        wait_until(lambda: self.shows(failing), 120, interval=0.1, message=f"the bridges to show failing={failing}")
        return time.time() - since

    def watch_for(self, failing: bool, since: float) -> Callable[[], float]:
        """`wait_for` on a thread of its own, from now (while a run fails); the returned function
        waits for it and gives its result."""
        result: dict[str, float | BaseException] = {}

        def watch() -> None:
            try:
                result["s"] = Bridges(self.redis_url, self.pva_settings).wait_for(failing, since)
            except BaseException as exc:  # handed to the caller
                result["s"] = exc

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()

        def outcome() -> float:
            thread.join(130)
            value = result.get("s", TimeoutError("the bridge watcher did not finish"))
            if isinstance(value, BaseException):
                raise value
            return value

        return outcome


def start_servers(starter: tango.DeviceProxy, servers: list[str], result: dict) -> None:
    """DevStart each server (in startup-level order, as DevStartAll would) and wait until it runs."""
    for server in servers:
        started = time.time()
        if server not in starter.command_inout("DevGetRunningServers", True):
            starter.command_inout("DevStart", server)
        wait_until(lambda s=server: s in starter.command_inout("DevGetRunningServers", True), 60, interval=0.2)
        result[f"start {server}"] = time.time() - started


def main() -> None:
    settings = json.loads(Path(sys.argv[1]).read_text())
    tango_host, db_namespace, link = settings["tango_host"], settings["db_namespace"], settings["link"]
    flags = Path(settings["flags"])
    starters = {}
    for role, device in settings["starters"].items():
        starters[role] = tango.DeviceProxy(f"tango://{tango_host}/{device}")
        starters[role].set_timeout_millis(10000)
    result: dict = {}
    start_servers(starters["hw"], settings["hardware"], result)
    start_servers(starters["cl"], settings["bridges"], result)
    db = tango.Database(*tango_host.split(":"))
    bridge_pids = {server: db.get_device_info(f"dserver/{server}").pid for server in settings["bridges"]}
    bridges = Bridges(settings["redis_url"], settings["pva"])
    bridges.wait_for(failing=False, since=time.time())
    devices = connect("sim/*/*", tango_host=tango_host)
    ctrl = tango.DeviceProxy(f"tango://{tango_host}/sim/aerotech/ctrl")
    ctrl.set_timeout_millis(3000)
    result["server_host"] = devices["x"].proxy.info().server_host
    hardware = listening_address(settings["hw_namespace"])
    result["fly"] = fly(devices, 1.0, 100)

    devices["x"].set(0.0).wait(30)
    cut: dict = {}

    def cut_link() -> None:
        wait_until(lambda: ctrl.pso_armed and ctrl.pso_pulse_count >= 100, 30, interval=0.01)
        set_link(db_namespace, link, "down")
        cut["at"] = time.time()
        cut["bridges"] = bridges.watch_for(failing=True, since=cut["at"])

    result["cut"] = fly(devices, 10.0, 1000, during=cut_link)
    result["cut"]["cut_at"] = cut["at"]
    result["cut"]["isolated"] = not reachable(hardware)  # the cut is real: no TCP connect gets through
    result["bridges_failing_after_cut"] = cut["bridges"]()
    set_link(db_namespace, link, "up")
    restored = time.time()
    wait_until(lambda: devices["x"].signal("position").get() is not None, 60, interval=0.05)
    result["reads_again_after"] = time.time() - restored
    result["all_answer_after_restore"] = wait_answering(devices, restored)
    result["bridges_valid_after_restore"] = bridges.wait_for(failing=False, since=restored)
    # The interrupted acquisition is still running on the detector host: stop it, as an operator would.
    acq_status = devices["pilatus"].signal("acq_status")
    result["acq_status_after_restore"] = wait_until(acq_status.get, 30, interval=0.05, message="acq_status")
    if result["acq_status_after_restore"] != "Ready":
        stop_acquisition = devices["pilatus"].link.command
        wait_until(lambda: stop_acquisition("stopAcq") is None, 30, interval=0.05, message="stopAcq to be accepted")
    wait_until(lambda: acq_status.get() == "Ready", 30, interval=0.05, message="the Pilatus to be Ready")
    wait_until(lambda: str(devices["x"].proxy.state()) != "MOVING", 60, interval=0.05)
    result["fly_again"] = fly(devices, 1.0, 100)

    result["step_cut"] = step_scan(devices, 40, cut_after=5, cut=lambda: set_link(db_namespace, link, "down"))
    result["step_cut"]["isolated"] = not reachable(hardware)
    set_link(db_namespace, link, "up")
    restored = time.time()
    wait_answering(devices, restored)
    wait_until(lambda: str(devices["x"].proxy.state()) != "MOVING", 60, interval=0.05)
    result["step_reads_again_after"] = time.time() - restored
    result["step_again"] = step_scan(devices, 5)

    (flags / "ready-for-db-restart").touch()
    wait_until(lambda: (flags / "db-down").exists(), 120, interval=0.05, message="the database host to stop")
    result["while_db_down"] = {
        "x": devices["x"].signal("position").get(),
        "acq_status": acq_status.get(),
        "moved": devices["x"].set(0.5).wait(30) is None and devices["x"].set(0.0).wait(30) is None,
    }
    (flags / "read-while-db-down").touch()
    wait_until(lambda: (flags / "db-up").exists(), 120, interval=0.05, message="the database host to restart")
    result["fly_after_db_restart"] = fly(devices, 1.0, 100)
    result["bridges_valid_at_end"] = bridges.shows(failing=False)
    # The database host is restarted, not waited for: ask until its DataBaseds answers again.
    pids_now = wait_until(
        lambda: {server: db.get_device_info(f"dserver/{server}").pid for server in settings["bridges"]},
        120,
        interval=0.2,
        message="the restarted database to answer",
    )
    result["bridges_same_processes"] = bridge_pids == pids_now
    for role, servers in (("cl", settings["bridges"]), ("hw", settings["hardware"])):
        for server in reversed(servers):
            starters[role].command_inout("DevStop", server)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
