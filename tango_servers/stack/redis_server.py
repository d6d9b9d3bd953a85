"""A `redis-server` on 127.0.0.1 for the Redis bridge, its data kept in the state directory.

It requires a password generated per stack, kept owner-only in STATE_DIR/redis/password and in
the owner-only redis.conf beside it (never on a command line, where any local user could read it).
"""

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import redis

from .processes import LOOPBACK, wait_until_ready

INSTALL_HINT = "install it with 'sudo apt-get install redis-server' (or run 'make redis-server' as root)"


def redis_server_path() -> str:
    """The `redis-server` on PATH; FileNotFoundError with the install command when missing."""
    path = shutil.which("redis-server")
    if not path:
        raise FileNotFoundError(f"redis-server is not on PATH: {INSTALL_HINT}")
    return path


def redis_url(port: int, password: str | None = None) -> str:
    """The server's URL; with `password`, the URL a client logs in with."""
    login = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{login}{LOOPBACK}:{port}/0"


def password_file(data_dir: Path) -> Path:
    return data_dir / "password"


def write_owner_only(path: Path, text: str) -> None:
    """Write `text` to `path` readable and writable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def stack_password(data_dir: Path) -> str:
    """The stack's Redis password, generated on first use and kept in `password_file(data_dir)`."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = password_file(data_dir)
    if not path.exists():
        write_owner_only(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def start_redis(port: int, data_dir: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    conf = data_dir / "redis.conf"
    write_owner_only(conf, f"requirepass {stack_password(data_dir)}\n")
    command = [
        redis_server_path(),
        str(conf),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_for_redis(port: int, process: subprocess.Popen, password: str | None = None, timeout: float = 15.0) -> None:
    """Return once redis-server answers PING; RuntimeError as soon as it exits, TimeoutError after `timeout` s."""

    def answers() -> bool:
        with redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=1.0) as client:
            return bool(client.ping())

    wait_until_ready(process, answers, timeout, f"redis-server on port {port}")
