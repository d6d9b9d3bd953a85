"""A local Tiled server (`tiled serve catalog`) keeping the stack's runs, its catalog in the state directory.

The catalog and tabular data are sqlite files, written arrays go to STATE_DIR/tiled/files, and the
server may read the detectors' files under STATE_DIR/data. The API key is generated once per stack
and kept owner-only in STATE_DIR/tiled/api_key; the server gets it through its environment.
"""

import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .processes import LOOPBACK
from .waiting import wait_until

DEFAULT_TILED_PORT = 10080
API_KEY_ENV = "TILED_API_KEY"  # what the Tiled client reads by itself
SERVER_API_KEY_ENV = "TILED_SINGLE_USER_API_KEY"  # what `tiled serve` reads
PING_TIMEOUT = 1.0


def tiled_dir(state_root: Path) -> Path:
    return state_root / "tiled"


def api_key_file(state_root: Path) -> Path:
    return tiled_dir(state_root) / "api_key"


def backup_dir(state_root: Path) -> Path:
    """Where runs that could not reach Tiled are kept as JSON Lines (TiledWriter's backup)."""
    return tiled_dir(state_root) / "backup"


def readable_dir(state_root: Path) -> Path:
    """The detectors' saving directories live under here (see pilatus.device.default_saving_directory)."""
    return state_root / "data"


def tiled_uri(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def stack_api_key(state_root: Path) -> str:
    """The stack's API key, made on first use in a file only its owner may read."""
    path = api_key_file(state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        key = secrets.token_hex(32)
        out.write(key + "\n")
    return key


def start_tiled(port: int, state_root: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`tiled serve catalog` on 127.0.0.1:`port`, creating the catalog on first start."""
    root = tiled_dir(state_root)
    files = root / "files"
    for directory in (files, readable_dir(state_root)):
        directory.mkdir(parents=True, exist_ok=True)
    catalog = root / "catalog.db"
    command = [
        sys.executable, "-m", "tiled", "serve", "catalog", str(catalog),
        "--write", str(files),
        "--write", f"sqlite:///{root / 'tables.db'}",
        "--read", str(readable_dir(state_root)),
        "--host", LOOPBACK,
        "--port", str(port),
    ]  # fmt: skip
    if not catalog.exists():
        command.append("--init")
    server_env = {**env, SERVER_API_KEY_ENV: stack_api_key(state_root)}
    # The server prints its URL with the key: the log is owner-only like the key file.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log, 0o600)
    with os.fdopen(fd, "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=server_env, cwd=root
        )


def tiled_answers(uri: str) -> bool:
    """True when a Tiled server answers its API root at `uri`."""
    try:
        with urllib.request.urlopen(f"{uri}/api/v1/", timeout=PING_TIMEOUT) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for_tiled(uri: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"tiled serve exited with code {process.returncode}")
        return tiled_answers(uri)

    wait_until(answers, timeout, interval=0.1, message=f"Tiled on {uri}")
