"""Issue 20, the launcher and the supervisor: hung servers, concurrent `up`s, read-only commands,
a full disk and bad input, each against a real supervisor, database and server processes."""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import tango

from tango_servers.stack.cli import stop_stack, wait_until_up
from tango_servers.stack.processes import LOOPBACK, free_port, pid_alive, started_by
from tango_servers.stack.serve import EXTRA_SERVERS_ENV
from tango_servers.stack.state import StackState
from tango_servers.stack.supervisor import StackOptions, spawn_supervisor
from tango_servers.stack.testing import RunningStack
from tango_servers.stack.waiting import wait_until

HERE = Path(__file__).parent
HEARTBEAT = f"{HERE / 'heartbeat_server.py'}:main"
HEARTBEAT_CONFIG = {"servers": {"Heartbeat": {"test": {"Heartbeat": {"test/heartbeat/1": {}}}}}}
SERVER = "Heartbeat/test"


def suite(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the installed `tango-suite` command as a user would."""
    environment = {**os.environ, EXTRA_SERVERS_ENV: json.dumps({"Heartbeat": HEARTBEAT})}
    command = [str(Path(sys.executable).with_name("tango-suite")), *args, "--state-dir", str(state_dir)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)


def ours(state_dir: Path) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and started_by(int(p.name), state_dir)]


@pytest.fixture
def heartbeat_stack(tmp_path: Path):
    """A heartbeat stack started with a short hang timeout; stopped (by PID) afterwards."""
    state = StackState(tmp_path / "state")
    state.ensure()
    config = tmp_path / "heartbeat.json"
    config.write_text(json.dumps(HEARTBEAT_CONFIG))
    options = StackOptions(
        state_dir=str(state.root),
        tango_host=f"{LOOPBACK}:{free_port()}",
        config_path=str(config),
        extra_servers={"Heartbeat": HEARTBEAT},
        hang_timeout=2.0,
    )
    supervisor = spawn_supervisor(state, options)
    try:
        wait_until_up(state, supervisor, quiet=True)
        yield RunningStack(state), supervisor
    finally:
        stop_stack(state, state.read() or {"supervisor_pid": supervisor.pid})
        supervisor.wait(timeout=60)
        for pid in ours(state.root):
            os.kill(pid, signal.SIGKILL)


def test_hung_server_is_killed_restarted_and_recorded(heartbeat_stack) -> None:
    running, _ = heartbeat_stack
    hung = running.server_pid(SERVER)
    os.kill(hung, signal.SIGSTOP)
    try:
        component = running.wait_server_back(SERVER, hung, timeout=60)
    finally:
        if pid_alive(hung):
            os.kill(hung, signal.SIGCONT)
    assert component["restarts"] == 1
    assert "no answer to State()" in component["last_hang"]
    assert not pid_alive(hung)
    assert running.proxy("test/heartbeat/1").state() == tango.DevState.ON


def test_supervisor_keeps_supervising_when_it_cannot_write_records(heartbeat_stack) -> None:
    running, supervisor = heartbeat_stack
    old = running.server_pid(SERVER)
    # Every write of the supervisor that grows a file past 1 byte now fails with EFBIG, like a full disk.
    resource.prlimit(supervisor.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    os.kill(old, signal.SIGKILL)
    proxy = running.proxy("test/heartbeat/1")
    wait_until(lambda: proxy.state() == tango.DevState.ON and not pid_alive(old), 60, message="the server back")
    assert supervisor.poll() is None
    assert running.component(SERVER)["pid"] == old  # nothing could be recorded yet
    resource.prlimit(supervisor.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    wait_until(lambda: running.component(SERVER)["restarts"] == 1, 30, message="the restart to be recorded")
    assert "could not be written" in running.current["records"]


def test_status_and_env_never_stop_an_unsupervised_stack_and_up_cleans_it(heartbeat_stack) -> None:
    running, supervisor = heartbeat_stack
    server = running.server_pid(SERVER)
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait(timeout=10)

    status = suite(running.state_dir, "status")
    assert status.returncode == 1
    assert "is unsupervised" in status.stdout
    rows = json.loads(suite(running.state_dir, "status", "--json").stdout)
    assert len(rows) >= 2 and all(row["status"] == "unsupervised" for row in rows), rows
    env = suite(running.state_dir, "env")
    assert env.returncode == 1 and "is unsupervised" in env.stderr
    assert pid_alive(server)
    assert running.proxy("test/heartbeat/1").state() == tango.DevState.ON

    config, host = running.current["config"], f"{LOOPBACK}:{free_port()}"
    up = suite(running.state_dir, "up", "--detach", "--config", config, "--tango-host", host)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "cleaned stale state of an unsupervised stack" in up.stdout, up.stdout
    assert "stopped its" in up.stdout and str(server) in up.stdout  # explicit: cleaned, not adopted
    assert not pid_alive(server)


def test_second_up_while_one_is_starting_is_refused(tmp_path: Path) -> None:
    state = StackState(tmp_path / "state")
    state.ensure()
    with state.starting():
        second = suite(state.root, "up", "--detach", "--tango-host", f"{LOOPBACK}:{free_port()}")
    assert second.returncode == 1
    assert f"the stack in {state.root} is being started by another 'tango-suite up' (pid {os.getpid()})" in (
        second.stderr
    )
    assert ours(state.root) == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (f"{LOOPBACK}:99999", "port 99999 is not between 1 and 65535"),
        (f"{LOOPBACK}:0", "port 0 is not between 1 and 65535"),
    ],
)
def test_bad_port_gives_one_line(tmp_path: Path, host: str, expected: str) -> None:
    result = suite(tmp_path / "state", "up", "--detach", "--tango-host", host)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert ours(tmp_path / "state") == []


def test_unwritable_state_dir_gives_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # root ignores modes: a regular file as parent makes the dir uncreatable
    result = suite(blocker / "state", "up", "--detach", "--tango-host", f"{LOOPBACK}:{free_port()}")
    assert result.returncode == 2
    assert f"state dir {blocker / 'state'} is not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_stack_redis_requires_its_own_password_which_only_the_owner_can_read(tmp_path: Path) -> None:
    config = tmp_path / "redis.json"
    config.write_text(json.dumps({"servers": {"RedisBridge": {"1": {"RedisBridge": {"sys/bridge/redis": {}}}}}}))
    state_dir = tmp_path / "state"
    host = f"{LOOPBACK}:{free_port()}"
    up = suite(state_dir, "up", "--detach", "--config", str(config), "--tango-host", host)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        secret = state_dir / "redis" / "password"
        password = secret.read_text().strip()
        assert len(password) >= 32
        for owner_only in (secret, state_dir / "redis" / "redis.conf", state_dir / "state.json"):
            assert owner_only.stat().st_mode & 0o077 == 0, owner_only
        redis_pid = next(
            c["pid"] for c in json.loads((state_dir / "state.json").read_text())["components"] if c["name"] == "redis"
        )
        assert password.encode() not in Path(f"/proc/{redis_pid}/cmdline").read_bytes()

        env = dict(line.removeprefix("export ").split("=", 1) for line in suite(state_dir, "env").stdout.splitlines())
        assert env["TANGO_SUITE_REDIS_PASSWORD"] == password
        url = env["TANGO_SUITE_REDIS_URL"]
        anonymous = redis.Redis.from_url(url.replace(f":{password}@", ""), socket_timeout=5.0)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert redis.Redis.from_url(url, socket_timeout=5.0).ping()

        bridge = tango.DeviceProxy(f"tango://{host}/sys/bridge/redis")
        bridge.set_timeout_millis(3000)
        wait_until(lambda: bridge.read_attribute("connected").value, 30, message="the bridge to log in to Redis")
        properties = tango.Database(*host.split(":")).get_device_property(
            "sys/bridge/redis", ["redis_url", "redis_password", "redis_password_file"]
        )
        assert password not in json.dumps({k: list(v) for k, v in properties.items()})
        assert list(properties["redis_password_file"]) == [str(secret)]
    finally:
        assert suite(state_dir, "down").returncode == 0


def test_two_ups_at_once_start_one_stack_and_down_stops_everything(tmp_path: Path) -> None:
    config = tmp_path / "heartbeat.json"
    config.write_text(json.dumps(HEARTBEAT_CONFIG))
    state_dir = tmp_path / "state"
    environment = {**os.environ, EXTRA_SERVERS_ENV: json.dumps({"Heartbeat": HEARTBEAT})}
    command = [str(Path(sys.executable).with_name("tango-suite")), "up", "--detach", "--state-dir", str(state_dir)]
    ups = [
        subprocess.Popen(
            [*command, "--config", str(config), "--tango-host", f"{LOOPBACK}:{free_port()}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    try:
        results = [(up.wait(timeout=240), *up.communicate(timeout=10)) for up in ups]
        started = [r for r in results if "starting on" in r[1]]
        assert len(started) == 1 and started[0][0] == 0, results
        code, out, err = next(r for r in results if r is not started[0])
        refused = code == 1 and "is being started by another 'tango-suite up'" in err
        came_after = code == 0 and "already up" in out  # the second started once the first was ready
        assert refused or came_after, results
    finally:
        assert suite(state_dir, "down").returncode == 0
    assert ours(state_dir) == []


def test_busy_server_is_not_taken_for_hung(heartbeat_stack) -> None:
    running, _ = heartbeat_stack
    pid = running.server_pid(SERVER)
    busy = running.proxy("test/heartbeat/1", timeout=30)
    busy.Busy(8.0)  # 4x the hang timeout; State() meanwhile gets "cannot acquire the monitor"
    assert running.server_pid(SERVER) == pid
    assert running.component(SERVER)["restarts"] == 0 and "last_hang" not in running.component(SERVER)


def test_read_only_state_dir_gives_one_line(tmp_path: Path) -> None:
    """A read-only file system, mounted in a private mount namespace that ends with the command."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    tango_suite = Path(sys.executable).with_name("tango-suite")
    script = f'mount -t tmpfs -o ro tmpfs "{mount_point}" && exec "{tango_suite}" up --detach --state-dir "$1"'
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    if probe.returncode:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(mount_point / "state")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr.strip()
        == f"tango-suite: state dir {mount_point / 'state'} is not writable: Read-only file system"
    )
