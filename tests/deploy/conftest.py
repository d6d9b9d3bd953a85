"""The production Tango path: MariaDB, Tango's C++ DataBaseds and Starter from Debian packages.

- `facility` (session): MariaDB with the packaged Tango schema, DataBaseds and a Starter for this host,
  on free loopback ports in a temporary directory; skipped with the install command when missing.
- `instance_for` (session): a server instance name of its own for a prefix (see `unique_instance`).
- `config_for` (session): the deployed configuration for a given server instance name.
- `servers` (session): the deployed server names, Automation1 first (Starter's startup-level order).
- `deployed` (session): `tango-suite deploy` of Automation1 and a small Pilatus onto it: a dry run,
  the write and a second deploy, with what each printed and the database after the dry run.
- `tango_suite` (function): run a `tango-suite` command line, returning (exit code, stdout, stderr).
"""

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tango_servers.stack.cli import main
from tango_servers.stack.mariadb import Facility, start_facility
from tango_servers.stack.testing import shipped_servers, small_pilatus


@pytest.fixture(scope="session")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    try:
        running = start_facility(tmp_path_factory.mktemp("facility"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        running.stop()


def run_tango_suite(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def tango_suite() -> Callable[..., tuple[int, str, str]]:
    return run_tango_suite


def deploy_config(instance: str) -> dict:
    """Automation1 (shipped devices) and a small Pilatus, both as server instance `instance`."""
    axes = {"Automation1": {instance: next(iter(shipped_servers("Automation1")["Automation1"].values()))}}
    return {"servers": {**axes, **small_pilatus(instance)}}


def unique_instance(prefix: str) -> str:
    """An instance name no other process on this host runs.

    Starter knows a server by executable and instance in the host's process list: another
    `Automation1 sim` on the host (a laptop stack, a parallel test run) is taken for ours, and
    Starter then never starts it.
    """
    return f"{prefix}{os.getpid()}"


INSTANCE = unique_instance("deploy")


@pytest.fixture(scope="session")
def instance_for() -> Callable[[str], str]:
    """instance_for(prefix) -> a server instance name no other process on this host runs."""
    return unique_instance


@pytest.fixture(scope="session")
def config_for() -> Callable[[str], dict]:
    """config_for(instance) -> the deployed configuration with that server instance name."""
    return deploy_config


@pytest.fixture(scope="session")
def servers() -> tuple[str, str]:
    return (f"Automation1/{INSTANCE}", f"Pilatus/{INSTANCE}")


@pytest.fixture(scope="session")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deploy") / "beamline.json"
    config = deploy_config(INSTANCE)
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="session")
def deployed(facility: Facility, config_file: Path) -> dict:
    def deploy(*argv: str) -> tuple[int, str, str]:
        return run_tango_suite("deploy", "--tango-host", facility.tango_host, "--config", str(config_file), *argv)

    db = facility.database()
    record = {"dry": deploy()}
    record["servers_after_dry"] = list(db.get_server_list("*"))
    record["starter_path_after_dry"] = list(
        db.get_device_property(facility.starter_device, ["StartDsPath"])["StartDsPath"]
    )
    record["write"] = deploy("--write")
    record["second"] = deploy()
    record["second_write"] = deploy("--write")
    return record
