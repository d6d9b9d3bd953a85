"""A `redis-server` on 127.0.0.1 for the Redis bridge, its data kept in the state directory."""

import shutil
import subprocess
from pathlib import Path

import redis

from .processes import LOOPBACK
from .waiting import wait_until

INSTALL_HINT = "install it with 'sudo apt-get install redis-server' (or run 'make redis-server' as root)"


def redis_server_path() -> str:
    """The `redis-server` on PATH; FileNotFoundError with the install command when missing."""
    path = shutil.which("redis-server")
    if not path:
        raise FileNotFoundError(f"redis-server is not on PATH: {INSTALL_HINT}")
    return path


def redis_url(port: int) -> str:
    return f"redis://{LOOPBACK}:{port}/0"


def start_redis(port: int, data_dir: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        redis_server_path(),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_for_redis(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        with redis.Redis(host=LOOPBACK, port=port, socket_timeout=1.0) as client:
            return bool(client.ping())

    wait_until(answers, timeout, interval=0.05, message=f"redis-server on port {port}")
