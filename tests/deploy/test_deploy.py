"""`tango-suite deploy` onto MariaDB + Tango's C++ DataBaseds, with Starter running what it deployed.

One deployment per module: a dry run, the write, and a second deploy, each recorded; then Starter
starts and stops the servers with DevStart/DevStop as Astor calls them, and bluesky scans on them.
"""

import contextlib
import io
import json
from pathlib import Path

import pytest
import tango

from tango_servers.stack.cli import main
from tango_servers.stack.deploy import (
    OWNER_OBJECT,
    OWNER_PROPERTY,
    STARTUP_LEVELS,
    default_ds_path,
    server_registration,
)
from tango_servers.stack.testing import shipped_servers, small_pilatus
from tango_servers.stack.waiting import wait_until

SERVERS = ("Automation1/sim", "Pilatus/deploy")


def deploy_config() -> dict:
    return {"servers": {**shipped_servers("Automation1"), **small_pilatus("deploy")}}


def tango_suite(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("deploy") / "beamline.json"
    path.write_text(json.dumps(deploy_config(), indent=2))
    return path


@pytest.fixture(scope="module")
def deployed(facility, config_file) -> dict:
    """Dry run, write, second deploy: what each printed, and what the database held after the dry run."""

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["deploy", "--tango-host", facility.tango_host, "--config", str(config_file), *argv])
        return code, out.getvalue()

    db = facility.database()
    record = {"dry": run()}
    record["servers_after_dry"] = list(db.get_server_list("*"))
    record["starter_path_after_dry"] = list(
        db.get_device_property(facility.starter_device, ["StartDsPath"])["StartDsPath"]
    )
    record["write"] = run("--write")
    record["second"] = run()
    record["second_write"] = run("--write")
    return record


def starter_proxy(facility) -> tango.DeviceProxy:
    # DevStart returns before the server is up; Astor's own timeout for Starter commands is long.
    return facility.proxy(facility.starter_device, timeout=10.0)


def running_servers(facility) -> list[str]:
    return list(starter_proxy(facility).command_inout("DevGetRunningServers", True))


def start_through_starter(facility, server: str) -> None:
    starter = starter_proxy(facility)
    if server not in running_servers(facility):
        starter.command_inout("DevStart", server)
    wait_until(lambda: server in running_servers(facility), 60, interval=0.2, message=f"Starter to run {server}")


def stop_through_starter(facility, server: str) -> None:
    starter_proxy(facility).command_inout("DevStop", server)
    wait_until(lambda: server not in running_servers(facility), 60, interval=0.2, message=f"Starter to stop {server}")


def test_dry_run_shows_the_dsconfig_diff_and_writes_nothing(deployed) -> None:
    code, out = deployed["dry"]
    assert code == 0
    assert "+ Device: sim/aerotech/x" in out and "+ Device: sim/pilatus/1" in out
    assert "run Automation1/sim on host" in out and "StartDsPath" in out
    assert "Nothing was written" in out
    assert not {"Automation1/sim", "Pilatus/deploy"} & set(deployed["servers_after_dry"])
    assert str(default_ds_path()) not in deployed["starter_path_after_dry"]


def test_write_registers_the_servers_for_starter(facility, deployed) -> None:
    assert deployed["write"][0] == 0
    db = facility.database()
    assert db.get_device_property("sim/pilatus/1", ["module_size"])["module_size"] == ["60", "30"]
    assert db.get_device_alias("pilatus") == "sim/pilatus/1"
    for server in SERVERS:
        info = server_registration(db, server)
        assert (info.host, info.mode, info.level) == (facility.host, 1, STARTUP_LEVELS[server.split("/")[0]])
    paths = db.get_device_property(facility.starter_device, ["StartDsPath"])["StartDsPath"]
    assert str(default_ds_path()) in paths
    assert sorted(db.get_property(OWNER_OBJECT, [OWNER_PROPERTY])[OWNER_PROPERTY]) == sorted(SERVERS)


def test_second_deploy_changes_nothing(deployed) -> None:
    for key in ("second", "second_write"):
        code, out = deployed[key]
        assert code == 0
        assert out.strip() == out.strip().split("\n")[0] and out.startswith("No changes needed")


def test_starter_starts_and_stops_our_servers(facility, deployed, capsys) -> None:
    server = "Pilatus/deploy"
    start_through_starter(facility, server)
    assert facility.proxy("sim/pilatus/1").state() in (tango.DevState.ON, tango.DevState.STANDBY)
    code, out, _ = tango_suite(capsys, "status", "--tango-host", facility.tango_host, "--json")
    rows = {row["server"]: row for row in json.loads(out)}
    assert code == 0 and rows[server]["starter"] == "running" and rows[server]["exported"]
    stop_through_starter(facility, server)
    code, out, _ = tango_suite(capsys, "status", "--tango-host", facility.tango_host, "--json")
    assert {row["server"]: row for row in json.loads(out)}[server]["starter"] == "stopped"
