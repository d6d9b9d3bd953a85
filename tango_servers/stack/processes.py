"""Process and port helpers. Only processes carrying this stack's marker are ever signalled."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .state import MARKER_ENV
from .waiting import wait_until

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def started_by(pid: int | None, state_dir: Path) -> bool:
    """True when `pid` is alive and was started for the stack in `state_dir`.

    Children carry the stack's marker in their environment. redis-server overwrites its
    environment when it sets its process title, so a process working inside the state
    directory (redis-server runs in STATE_DIR/redis) counts as ours too.
    """
    if not pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    try:
        if f"{MARKER_ENV}={state_dir}".encode() in proc.joinpath("environ").read_bytes().split(b"\0"):
            return True
        return Path(os.readlink(proc / "cwd")).is_relative_to(state_dir)
    except OSError:
        return False


def stop_process(pid: int, state_dir: Path, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; a no-op for processes that are not ours."""
    if not started_by(pid, state_dir):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    if started_by(pid, state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_child(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a child of this process: SIGTERM, then SIGKILL after `grace` seconds; reaps it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def kill_child(process: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGKILL a child of this process by its PID and reap it (for servers keeping no state)."""
    if process is None or process.poll() is not None:
        return
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)


def wait_until_ready(
    process: subprocess.Popen, ready: Callable[[], T], timeout: float, what: str, log: Path | None = None
) -> T:
    """Poll `ready()` (exceptions count as "not yet") until truthy and return it. RuntimeError naming
    `what` (and its `log`) as soon as `process` exits; TimeoutError naming `what` after `timeout` s."""
    exited = object()

    def answers() -> T | object:
        return exited if process.poll() is not None else ready()

    result = wait_until(answers, timeout, interval=0.1, message=what)
    if result is exited:
        where = f"; see {log}" if log else ""
        raise RuntimeError(f"{what} exited with code {process.returncode}{where}")
    return result  # type: ignore[return-value]
