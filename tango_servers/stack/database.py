"""The Tango database of a stack: pytango-db's sqlite DataBaseds, and loading dsconfig JSON into it."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tango

from .config import SuiteConfig
from .processes import LOOPBACK
from .waiting import wait_until

DATABASE_INSTANCE = "2"


def database_command() -> list[str]:
    """PyDatabaseds from the same environment as this Python."""
    script = Path(sys.executable).with_name("PyDatabaseds")
    if script.exists():
        return [str(script)]
    found = shutil.which("PyDatabaseds")
    if not found:
        raise FileNotFoundError("PyDatabaseds (pytango-db) is not installed in this environment")
    return [found]


def start_database(port: int, database_file: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start DataBaseds on 127.0.0.1:`port` with its sqlite file at `database_file`."""
    env = {**env, "PYTANGO_DATABASE_NAME": str(database_file), "TANGO_HOST": f"{LOOPBACK}:{port}"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*database_command(), "--host", LOOPBACK, "--port", str(port), DATABASE_INSTANCE],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=database_file.parent,
        )


def database_proxy(tango_host: str, timeout: float = 3.0) -> tango.Database:
    host, port = tango_host.split(":")
    db = tango.Database(host, int(port))
    db.set_timeout_millis(int(timeout * 1000))
    return db


def wait_for_database(tango_host: str, process: subprocess.Popen, timeout: float = 30.0) -> tango.Database:
    def answers() -> tango.Database | None:
        if process.poll() is not None:
            raise RuntimeError(f"the Tango database exited with code {process.returncode}")
        db = database_proxy(tango_host)
        db.get_info()
        return db

    return wait_until(answers, timeout, interval=0.1, message=f"the Tango database on {tango_host}")


def load_into_database(config: SuiteConfig, db: tango.Database) -> int:
    """Apply the configuration with dsconfig (add/update servers, devices, properties).

    Returns the number of database calls made.
    """
    from dsconfig.json2tango import apply_config, prepare_config

    document = prepare_config(config.document)
    # dsconfig draws a progress bar on stdout; the launcher reports progress itself.
    with contextlib.redirect_stdout(io.StringIO()), _tango_host_env(db):
        _, _, calls, _, _, _ = apply_config(document, db, write=True, update=True)
    return len(calls)


@contextlib.contextmanager
def _tango_host_env(db: tango.Database):
    """dsconfig reads TANGO_HOST for some look-ups; point it at this database."""
    old = os.environ.get("TANGO_HOST")
    os.environ["TANGO_HOST"] = f"{db.get_db_host()}:{db.get_db_port()}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TANGO_HOST", None)
        else:
            os.environ["TANGO_HOST"] = old
