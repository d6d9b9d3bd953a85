"""`tango-suite deploy` onto MariaDB + Tango's C++ DataBaseds, with Starter running what it deployed.

The `deployed` fixture recorded a dry run, the write and a second deploy; Starter then starts and
stops the servers with DevStart/DevStop as Astor calls them, and `status --tango-host` follows.
"""

import json

import tango

from tango_servers.stack.deploy import (
    OWNER_OBJECT,
    OWNER_PROPERTY,
    STARTUP_LEVELS,
    default_ds_path,
    server_registration,
)


def test_dry_run_shows_the_dsconfig_diff_and_writes_nothing(deployed, servers) -> None:
    code, out, _ = deployed["dry"]
    assert code == 0
    assert "+ Device: sim/aerotech/x" in out and "+ Device: sim/pilatus/1" in out
    assert f"run {servers[0]} on host" in out and "StartDsPath" in out
    assert "Nothing was written" in out
    assert not set(servers) & set(deployed["servers_after_dry"])
    assert str(default_ds_path()) not in deployed["starter_path_after_dry"]


def test_write_registers_the_servers_for_starter(facility, deployed, servers) -> None:
    assert deployed["write"][0] == 0
    db = facility.database()
    assert db.get_device_property("sim/pilatus/1", ["module_size"])["module_size"] == ["60", "30"]
    assert db.get_device_alias("pilatus") == "sim/pilatus/1"
    for server in servers:
        info = server_registration(db, server)
        assert (info.host, info.mode, info.level) == (facility.host, 1, STARTUP_LEVELS[server.split("/")[0]])
    paths = db.get_device_property(facility.starter_device, ["StartDsPath"])["StartDsPath"]
    assert str(default_ds_path()) in paths
    assert sorted(db.get_property(OWNER_OBJECT, [OWNER_PROPERTY])[OWNER_PROPERTY]) == sorted(servers)


def test_second_deploy_changes_nothing(deployed) -> None:
    for key in ("second", "second_write"):
        code, out, _ = deployed[key]
        assert code == 0
        assert out.strip() == f"No changes needed in {out.split()[-1]}"


def test_starter_starts_and_stops_our_servers(facility, deployed, servers, tango_suite) -> None:
    server = servers[1]
    facility.start_server(server)
    assert facility.proxy("sim/pilatus/1").state() in (tango.DevState.ON, tango.DevState.STANDBY)
    code, out, _ = tango_suite("status", "--tango-host", facility.tango_host, "--json")
    rows = {row["server"]: row for row in json.loads(out)}
    assert code == 0 and rows[server]["starter"] == "running" and rows[server]["exported"]
    facility.stop_server(server)
    code, out, _ = tango_suite("status", "--tango-host", facility.tango_host, "--json")
    assert {row["server"]: row for row in json.loads(out)}[server]["starter"] == "stopped"
    code, out, _ = tango_suite("status", "--tango-host", facility.tango_host)
    assert out.splitlines()[0].split() == ["server", "host", "level", "exported", "pid", "starter"]


def test_a_device_without_alias_or_properties_added_later_deploys_once(
    facility, tmp_path, tango_suite, instance_for
) -> None:
    # dsconfig reads a device's NULL alias back as "", keeping the last such row of the device table:
    # once that is a configured device (one added to a server deployed before), it wanted "" deleted.
    instance = instance_for("bare")
    named = {f"test/named/{instance}": {"alias": f"named{instance}"}}
    path = tmp_path / "bare.json"
    deploy = ("deploy", "--tango-host", facility.tango_host, "--config", str(path))
    for devices in (named, {**named, f"test/bare/{instance}": {}}):
        path.write_text(json.dumps({"servers": {"OAV": {instance: {"OAV": devices}}}}))
        code, out, err = tango_suite(*deploy, "--write")
        assert code == 0, err
    assert f"+ Device: test/bare/{instance}" in out
    code, out, err = tango_suite(*deploy)
    assert (code, out.strip(), err) == (0, f"No changes needed in {facility.tango_host}.", "")
