"""`tango-suite` as a user runs it: a real database, real server processes, real supervisor."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tango

from tango_servers.stack.processes import LOOPBACK, free_port, pid_alive, started_by
from tango_servers.stack.serve import EXTRA_SERVERS_ENV
from tango_servers.stack.waiting import wait_until

HERE = Path(__file__).parent
HEARTBEAT = f"{HERE / 'heartbeat_server.py'}:main"
HEARTBEAT_CONFIG = {
    "servers": {
        "Heartbeat": {
            "test": {"Heartbeat": {"test/heartbeat/1": {"properties": {"period": ["0.05"]}}, "test/heartbeat/2": {}}}
        }
    }
}


def suite(
    state_dir: Path, *args: str, extra: dict | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the installed `tango-suite` command exactly as a user would."""
    environment = {**os.environ, **(env or {}), EXTRA_SERVERS_ENV: json.dumps(extra or {"Heartbeat": HEARTBEAT})}
    command = [str(Path(sys.executable).with_name("tango-suite")), *args, "--state-dir", str(state_dir)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)


def processes_marked(state_dir: Path) -> list[int]:
    """PIDs of every live process started for the stack in `state_dir` (by the launcher's own rule)."""
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and started_by(int(p.name), state_dir.resolve())
    ]


@pytest.fixture
def heartbeat_config(tmp_path: Path) -> Path:
    path = tmp_path / "heartbeat.json"
    path.write_text(json.dumps(HEARTBEAT_CONFIG))
    return path


def test_up_status_down_round_trip_leaves_no_process(tmp_path: Path, heartbeat_config: Path) -> None:
    state_dir = tmp_path / "state"
    host = f"{LOOPBACK}:{free_port()}"
    up = suite(state_dir, "up", "--detach", "--config", str(heartbeat_config), "--tango-host", host)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "test/heartbeat/1" in up.stdout

    status = suite(state_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    by_device = {row["device"]: row for row in rows}
    assert by_device["test/heartbeat/1"]["state"] == "ON"
    assert by_device["test/heartbeat/2"]["server"] == "Heartbeat/test"
    assert by_device["sys/database/2"]["port"] == int(host.split(":")[1])
    assert all({"server", "device", "state", "pid"} <= row.keys() for row in rows)

    proxy = tango.DeviceProxy(f"tango://{host}/test/heartbeat/1")
    beats = proxy.read_attribute("beats").value
    wait_until(lambda: proxy.read_attribute("beats").value > beats, 5, message="the heartbeat to tick")
    assert tango.Database(LOOPBACK, int(host.split(":")[1])).get_device_property("test/heartbeat/1", "period")[
        "period"
    ] == ["0.05"]

    env = suite(state_dir, "env")
    assert f"export TANGO_HOST={host}" in env.stdout

    started = processes_marked(state_dir)
    assert len(started) >= 3  # supervisor, database, server

    down = suite(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in started if pid_alive(pid)]
    assert processes_marked(state_dir) == []
    assert json.loads(suite(state_dir, "status", "--json").stdout) == []


def test_up_twice_says_already_up_and_stale_state_is_cleaned(tmp_path: Path, heartbeat_config: Path) -> None:
    state_dir = tmp_path / "state"
    host = f"{LOOPBACK}:{free_port()}"
    assert suite(state_dir, "up", "--detach", "--config", str(heartbeat_config), "--tango-host", host).returncode == 0
    try:
        again = suite(state_dir, "up", "--detach", "--config", str(heartbeat_config), "--tango-host", host)
        assert again.returncode == 0
        assert "already up" in again.stdout

        # A crashed supervisor leaves its children and state behind: the next `up` cleans them.
        state = json.loads((state_dir / "state.json").read_text())
        os.kill(state["supervisor_pid"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(state["supervisor_pid"]), 5, message="the supervisor to die")
        leftovers = processes_marked(state_dir)
        assert leftovers

        fresh = suite(state_dir, "up", "--detach", "--config", str(heartbeat_config), "--tango-host", host)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert "cleaned stale state" in fresh.stdout
        assert not [pid for pid in leftovers if pid_alive(pid)]
    finally:
        suite(state_dir, "down")
    assert processes_marked(state_dir) == []


def test_killed_server_is_restarted_and_answers_again(make_stack) -> None:
    running = make_stack(HEARTBEAT_CONFIG, extra_servers={"Heartbeat": HEARTBEAT})
    old_pid = running.kill_server("Heartbeat/test")
    component = running.wait_server_back("Heartbeat/test", old_pid)
    assert component["restarts"] == 1
    assert running.proxy("test/heartbeat/2").state() == tango.DevState.ON


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"servers": {\n  "Heartbeat": [,]\n}}')
    result = suite(
        tmp_path / "state", "up", "--detach", "--config", str(bad), "--tango-host", f"{LOOPBACK}:{free_port()}"
    )
    assert result.returncode == 2
    assert f"malformed JSON in {bad}: line 2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert processes_marked(tmp_path / "state") == []


def test_unknown_server_and_class_are_named(tmp_path: Path) -> None:
    unknown_server = tmp_path / "server.json"
    unknown_server.write_text(json.dumps({"servers": {"NoSuchServer": {"1": {"X": {"a/b/c": {}}}}}}))
    result = suite(tmp_path / "s1", "up", "--detach", "--config", str(unknown_server))
    assert result.returncode == 2
    assert "unknown server 'NoSuchServer' at servers/NoSuchServer" in result.stderr

    unknown_class = tmp_path / "class.json"
    unknown_class.write_text(json.dumps({"servers": {"Heartbeat": {"t": {"NoSuchClass": {"a/b/c": {}}}}}}))
    result = suite(tmp_path / "s2", "up", "--detach", "--config", str(unknown_class))
    assert result.returncode == 2
    assert "unknown device class 'NoSuchClass' at servers/Heartbeat/t/NoSuchClass" in result.stderr


def test_port_in_use_is_refused_and_nothing_starts(tmp_path: Path, heartbeat_config: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = suite(
            tmp_path / "state",
            "up",
            "--detach",
            "--config",
            str(heartbeat_config),
            "--tango-host",
            f"{LOOPBACK}:{port}",
        )
    assert result.returncode == 2
    assert f"port {port} on {LOOPBACK} is already in use" in result.stderr
    assert processes_marked(tmp_path / "state") == []


def test_missing_redis_server_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "redis.json"
    config.write_text(json.dumps({"servers": {"RedisBridge": {"1": {"RedisBridge": {"sys/bridge/redis": {}}}}}}))
    result = suite(
        tmp_path / "state",
        "up",
        "--detach",
        "--config",
        str(config),
        "--tango-host",
        f"{LOOPBACK}:{free_port()}",
        env={"PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 2
    assert "redis-server is not on PATH" in result.stderr
    assert processes_marked(tmp_path / "state") == []


def test_server_that_keeps_crashing_fails_start_up_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "crash.json"
    config.write_text(json.dumps({"servers": {"Heartbeat": {"crash": {"Crasher": {"test/crasher/1": {}}}}}}))
    state_dir = tmp_path / "state"
    result = suite(state_dir, "up", "--detach", "--config", str(config), "--tango-host", f"{LOOPBACK}:{free_port()}")
    assert result.returncode == 2
    assert "server Heartbeat/crash keeps exiting" in result.stderr
    assert processes_marked(state_dir) == []


def test_down_stops_redis_server_too(tmp_path: Path) -> None:
    """redis-server rewrites its environment (process title), so it is recognised by its directory."""
    config = tmp_path / "redis.json"
    config.write_text(json.dumps({"servers": {"RedisBridge": {"1": {"RedisBridge": {"sys/bridge/redis": {}}}}}}))
    state_dir = tmp_path / "state"
    up = suite(state_dir, "up", "--detach", "--config", str(config), "--tango-host", f"{LOOPBACK}:{free_port()}")
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((state_dir / "state.json").read_text())
    redis_pid = next(c["pid"] for c in state["components"] if c["name"] == "redis")
    assert redis_pid in processes_marked(state_dir)
    assert suite(state_dir, "down").returncode == 0
    assert not pid_alive(redis_pid)
    assert processes_marked(state_dir) == []
