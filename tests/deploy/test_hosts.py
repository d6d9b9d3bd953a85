"""Three simulated hosts in network namespaces joined by veth pairs on a bridge (198.18.0.0/24, a
range reserved for such tests; no traffic leaves the namespaces):

- database host 198.18.0.1: MariaDB and Tango's C++ DataBaseds on 198.18.0.1:10000;
- hardware host 198.18.0.2: Starter, running Automation1 and Pilatus bound to (so publishing) 198.18.0.2;
- client host 198.18.0.3: `tango-suite deploy`, ophyd_tango and bluesky (tests/deploy/cross_host_client.py),
  and a Starter running the Redis and PVA bridges (redis-server and the PVA clients on its loopback).

Each host has its own host name (a UTS namespace, and /etc/hosts through `ip netns exec`'s
/etc/netns/NAME): with one shared name, omniORB would take the peers for local processes and talk
to them over its Unix sockets in /tmp, past any network cut.

A fly scan crosses hosts; the hardware host's link is cut mid-fly and mid step scan, and restored; the database host
is restarted under a connected client; times are reported.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tango_servers.stack.processes import stop_child
from tango_servers.stack.waiting import wait_until
from tango_servers.stack.wiring import pva_client_settings

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SUBNET = "198.18.0"
TANGO_HOST = f"{SUBNET}.1:10000"
ADDRESSES = {"db": f"{SUBNET}.1", "hw": f"{SUBNET}.2", "cl": f"{SUBNET}.3"}
# On the client host's own loopback: its namespace is fresh, so the standard ports are free.
REDIS_PORT, PVA_SERVER_PORT, PVA_BROADCAST_PORT = 6379, 5075, 5076
FOLLOWED = {"devices": ["sim/aerotech/x", "sim/pilatus/1"], "attributes": ["position", "acq_status"]}


def bridges_config(instance: str) -> dict:
    """The Redis and PVA bridges, following the axis position and the detector status."""
    redis = {**FOLLOWED, "redis_url": [f"redis://127.0.0.1:{REDIS_PORT}/0"]}
    pva = {**FOLLOWED, "server_port": [str(PVA_SERVER_PORT)], "broadcast_port": [str(PVA_BROADCAST_PORT)]}
    return {
        "servers": {
            "RedisBridge": {instance: {"RedisBridge": {"sys/bridge/redis": {"properties": redis}}}},
            "PvaBridge": {instance: {"PvaBridge": {"sys/bridge/pva": {"properties": pva}}}},
        }
    }


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Hosts:
    """The three namespaces, named after this process so parallel runs never meet."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"tsb{os.getpid()}"
        self.namespaces = {role: f"{self.prefix}-{role}" for role in ADDRESSES}
        self.hostnames = dict(self.namespaces)
        self.processes: list[subprocess.Popen] = []

    def link_of(self, role: str) -> str:
        """The role's bridge port in the database host (cut it to cut the role off)."""
        return f"{role}-port"

    def etc(self, role: str) -> Path:
        """The files `ip netns exec` bind-mounts over /etc in the role's namespace."""
        return Path("/etc/netns") / self.namespaces[role]

    def create(self) -> None:
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ADDRESSES[r]} {self.hostnames[r]}\n" for r in ADDRESSES)
        for role, namespace in self.namespaces.items():
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
            self.etc(role).mkdir(parents=True)
            (self.etc(role) / "hosts").write_text(hosts)
        db = self.namespaces["db"]
        ip("-n", db, "link", "add", "br0", "type", "bridge")
        ip("-n", db, "addr", "add", f"{ADDRESSES['db']}/24", "dev", "br0")
        ip("-n", db, "link", "set", "br0", "up")
        for role in ("hw", "cl"):
            namespace = self.namespaces[role]
            ip(
                "link",
                "add",
                "eth0",
                "netns",
                namespace,
                "type",
                "veth",
                "peer",
                "name",
                self.link_of(role),
                "netns",
                db,
            )
            ip("-n", db, "link", "set", self.link_of(role), "master", "br0")
            ip("-n", db, "link", "set", self.link_of(role), "up")
            ip("-n", namespace, "addr", "add", f"{ADDRESSES[role]}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")

    def command(self, role: str, *argv: str) -> list[str]:
        """`argv` run on the role's host: its network namespace and its own host name."""
        rename = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.namespaces[role], "unshare", "--uts", "sh", "-c", rename,
                self.hostnames[role], *argv]  # fmt: skip

    def stop(self, process: subprocess.Popen) -> None:
        stop_child(process, grace=30)
        self.processes.remove(process)

    def start(self, role: str, *argv: str, name: str = "", ready_text: str = "ready") -> subprocess.Popen:
        """Run a long-lived part on a host, logging to `name`.log; it prints `ready_text` once up."""
        log = self.root / f"{name or role}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(self.command(role, *argv), stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{role} host exited: {log.read_text()[-500:]}")
            return ready_text in log.read_text()

        wait_until(ready, 120, interval=0.1, message=f"{name or role} on the {role} host ({log})")
        return process

    def start_database(self) -> subprocess.Popen:
        """MariaDB and DataBaseds on the database host; again after a stop, with the same data."""
        self.database = self.start(
            "db", sys.executable, "-m", "tango_servers.stack.mariadb", "database", str(self.root / "db"),
            ADDRESSES["db"], TANGO_HOST.rsplit(":", 1)[1],
        )  # fmt: skip
        return self.database

    def remove(self) -> None:
        for process in reversed(self.processes):
            stop_child(process, grace=30)
        for role, namespace in self.namespaces.items():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
            shutil.rmtree(self.etc(role), ignore_errors=True)
        with contextlib.suppress(OSError):  # shared with any other run's namespaces
            Path("/etc/netns").rmdir()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if not shutil.which("ip"):
        pytest.skip("the 'ip' command (iproute2) is missing")
    if not Path("/usr/lib/tango/Starter").exists() or not shutil.which("redis-server"):
        pytest.skip("Tango's Starter or redis-server is missing: run 'make debian-packages' as root")
    hosts = Hosts(tmp_path_factory.mktemp("hosts"))
    try:
        hosts.create()
        python = sys.executable
        hosts.start_database()
        for role in ("hw", "cl"):
            hosts.start(role, python, "-m", "tango_servers.stack.mariadb", "starter", str(hosts.root / role),
                        ADDRESSES[role], TANGO_HOST, name=f"{role}-starter")  # fmt: skip
        (hosts.root / "redis").mkdir()
        hosts.start("cl", "redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "",
                    "--appendonly", "no", "--dir", str(hosts.root / "redis"), name="redis",
                    ready_text="Ready to accept connections")  # fmt: skip
        yield hosts
    finally:
        hosts.remove()


@pytest.fixture(scope="module")
def cross_host_run(hosts, config_for) -> dict:
    """Deploy from the client host, then run cross_host_client.py there, restarting the database host
    when it asks; its JSON result plus the database host's downtime."""
    instance = f"hw{os.getpid()}"  # Starter would take another stack's `Automation1 sim` for ours
    for role, config in (("hw", config_for(instance)), ("cl", bridges_config(instance))):
        path = hosts.root / f"{role}-servers.json"
        path.write_text(json.dumps(config))
        deploy = subprocess.run(
            hosts.command("cl", sys.executable, "-m", "tango_servers.stack.cli", "deploy", "--tango-host",
                          TANGO_HOST, "--config", str(path), "--host", hosts.hostnames[role], "--write"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert deploy.returncode == 0, deploy.stderr
    flags = hosts.root / "flags"
    flags.mkdir()
    settings = {
        "tango_host": TANGO_HOST,
        "starters": {role: f"tango/admin/{hosts.hostnames[role]}" for role in ("hw", "cl")},
        "hardware": [f"Automation1/{instance}", f"Pilatus/{instance}"],
        "bridges": [f"RedisBridge/{instance}", f"PvaBridge/{instance}"],
        "db_namespace": hosts.namespaces["db"],
        "link": hosts.link_of("hw"),
        "hw_namespace": hosts.namespaces["hw"],
        "redis_url": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "pva": pva_client_settings(PVA_SERVER_PORT, PVA_BROADCAST_PORT),
        "flags": str(flags),
    }
    (hosts.root / "client.json").write_text(json.dumps(settings, indent=2))
    log = hosts.root / "client.log"
    with open(log, "wb") as out:
        client = subprocess.Popen(
            hosts.command("cl", sys.executable, str(HERE / "cross_host_client.py"), str(hosts.root / "client.json")),
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )

    def client_reached(flag: str) -> bool:
        if client.poll() is not None:
            pytest.fail(f"the client host's script exited early: {log.read_text()[-3000:]}")
        return (flags / flag).exists()

    try:
        wait_until(lambda: client_reached("ready-for-db-restart"), 600, interval=0.1, message="the client")
        db_stopped = time.time()
        hosts.stop(hosts.database)
        (flags / "db-down").touch()
        wait_until(lambda: client_reached("read-while-db-down"), 120, interval=0.05, message="the client")
        hosts.start_database()
        db_back = time.time()
        (flags / "db-up").touch()
        stdout, _ = client.communicate(timeout=300)
    finally:
        stop_child(client)
    assert client.returncode == 0, log.read_text()[-3000:]
    result = {**json.loads(stdout.strip().splitlines()[-1]), "database_host_down_s": db_back - db_stopped}
    (hosts.root / "result.json").write_text(json.dumps(result, indent=2))
    return result


def test_fly_scan_across_hosts_link_cut_and_restore_and_database_restart(cross_host_run, record_property) -> None:
    result = cross_host_run
    assert result["server_host"] != "" and result["fly"]["exit_status"] == "success"
    assert result["fly"]["events"] == 100
    cut = result["cut"]
    assert cut["isolated"], "the cut let a TCP connect to the hardware host through"
    assert cut["exit_status"] == "fail"
    assert "sim/pilatus/1" in cut["reason"] or "sim/aerotech" in cut["reason"], cut["reason"]
    # Both bridges marked the axis failing (Redis error, PV INVALID) while cut off, and valid again after:
    # the same bridge processes, never restarted.
    assert result["bridges_same_processes"] and result["bridges_valid_at_end"]
    assert result["fly_again"]["exit_status"] == "success" and result["fly_again"]["events"] == 100
    assert result["step_again"]["exit_status"] == "success" and result["step_again"]["events"] == 5
    # The database host restarted: running servers kept serving the connected client.
    assert result["while_db_down"]["moved"] and result["while_db_down"]["acq_status"] == "Ready"
    after = result["fly_after_db_restart"]
    assert after["exit_status"] == "success" and after["events"] == 100, after["reason"]
    step_cut = result["step_cut"]
    times = {
        "fly_100_points_s": result["fly"]["stopped"] - result["fly"]["started"],
        "fly_cut_to_failed_run_s": cut["stopped"] - cut["cut_at"],
        "fly_cut_to_run_engine_returned_s": cut["returned"] - cut["cut_at"],
        "fly_cut_to_bridges_failing_s": result["bridges_failing_after_cut"],
        "fly_restore_to_first_read_s": result["reads_again_after"],
        "fly_restore_to_every_device_answering_s": result["all_answer_after_restore"],
        "restore_to_bridges_valid_s": result["bridges_valid_after_restore"],
        "fly_again_100_points_s": result["fly_again"]["stopped"] - result["fly_again"]["started"],
        "step_cut_to_end_of_run_s": step_cut["stopped"] - step_cut["cut_at"],
        "step_cut_to_run_engine_returned_s": step_cut["returned"] - step_cut["cut_at"],
        "step_restore_to_axis_at_rest_s": result["step_reads_again_after"],
        "database_host_down_s": result["database_host_down_s"],
        "fly_after_database_restart_s": after["stopped"] - after["started"],
    }
    for name, value in times.items():
        record_property(name, round(value, 3))
    print(f"\ncross-host timings: {json.dumps({k: round(v, 3) for k, v in times.items()})}")


def test_link_cut_mid_step_scan_fails_naming_the_axis(cross_host_run) -> None:
    step_cut = cross_host_run["step_cut"]
    assert step_cut["isolated"], "the cut let a TCP connect to the hardware host through"
    assert step_cut["exit_status"] == "fail" and "sim/aerotech/x" in step_cut["reason"], step_cut["reason"]
