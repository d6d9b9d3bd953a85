"""`tango-suite shell -c` and `tango-suite demo` keep their runs in the stack's Tiled, as a user runs them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tango_servers.stack.kept_runs import tiled_client
from tango_servers.stack.testing import shipped_servers, small_pilatus, start_stack


@pytest.fixture(scope="module")
def session_stack(tmp_path_factory):
    config = {"servers": {**shipped_servers("Automation1"), **small_pilatus("session")}}
    running = start_stack(tmp_path_factory.mktemp("session"), config=config, redis=False, bridges=False, tiled=True)
    try:
        yield running
    finally:
        running.down()


def suite(stack, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("tango-suite")), *args, "--state-dir", str(stack.state_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_shell_keeps_its_runs_in_tiled(session_stack) -> None:
    result = suite(session_stack, "shell", "-c", "uid, = RE(count([pilatus], 2)); print('run', uid)")
    assert result.returncode == 0, result.stdout + result.stderr
    uid = re.search(r"run ([0-9a-f-]{36})", result.stdout).group(1)
    run = tiled_client(session_stack.tiled)[uid]
    assert run.start["plan_name"] == "count"
    assert run["primary"]["pilatus_image"].shape[0] == 2


def test_demo_reads_its_run_back_from_tiled(session_stack) -> None:
    result = suite(session_stack, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    uid = re.search(r"Run ([0-9a-f-]{36}) finished", result.stdout).group(1)
    read_back = f"Read back from Tiled at {session_stack.tiled.uri}: run {uid}, 13 points, peak at omega = 0"
    assert read_back in result.stdout
    assert "from_uri(os.environ['TILED_URI'])" in result.stdout  # how to do it by hand
    assert tiled_client(session_stack.tiled)[uid].stop["exit_status"] == "success"
