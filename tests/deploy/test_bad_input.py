"""Bad input to `tango-suite deploy`: one clear line, exit code 2, and nothing written to the database."""

import json

import pytest
import tango

from tango_servers.stack.deploy import OWNER_OBJECT, OWNER_PROPERTY
from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import SMALL_PILATUS, shipped_servers


def database_snapshot(db: tango.Database) -> str:
    """Everything deploy could touch: dsconfig's dump (servers, classes), Starter and ownership records."""
    from dsconfig.dump import get_db_data

    servers = list(db.get_server_list("*"))
    registrations = [list(db.command_inout("DbGetServerInfo", server)) for server in servers]
    owned = list(db.get_property(OWNER_OBJECT, [OWNER_PROPERTY])[OWNER_PROPERTY])
    data = get_db_data(db, dservers=True, class_properties=True, include_tango_host=False)
    return json.dumps([data, registrations, owned], sort_keys=True, default=str)


@pytest.fixture
def write_config(tmp_path):
    def write(servers: dict) -> str:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"servers": servers}))
        return str(path)

    return write


@pytest.fixture
def refused(facility, tango_suite):
    """refused(*deploy args) -> the one error line; asserts exit 2 and an unchanged database."""

    def run(*argv: str) -> str:
        before = database_snapshot(facility.database())
        code, out, err = tango_suite("deploy", *argv, "--write")
        assert code == 2, (out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert database_snapshot(facility.database()) == before
        return err.strip()

    return run


def test_unreachable_tango_host(facility, refused, write_config) -> None:
    tango_host = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(shipped_servers("Automation1"))
    error = refused("--tango-host", tango_host, "--config", config)
    assert error.startswith(f"tango-suite: cannot reach the Tango database at {tango_host} (--tango-host)")


def test_server_name_existing_with_another_class(facility, refused, write_config) -> None:
    db = facility.database()
    taken = tango.DbDevInfo()
    taken.name, taken._class, taken.server = "test/taken/1", "TangoTest", "Pilatus/taken"
    db.add_device(taken)
    pilatus = {"Pilatus": {"taken": {"LimaCCDs": {"sim/pilatus/taken": {"properties": dict(SMALL_PILATUS)}}}}}
    # A server that would be fine comes first: it must not be written either.
    automation1 = {"Automation1": {"refused": {"Automation1Controller": {"sim/refused/ctrl": {}}}}}
    config = write_config({**automation1, **pilatus})
    error = refused("--tango-host", facility.tango_host, "--config", config)
    assert "server Pilatus/taken already exists" in error and "with class TangoTest" in error
    assert config in error


def test_starter_missing_on_the_target_host(facility, refused, write_config) -> None:
    config = write_config({"Automation1": {"nostarter": {"Automation1Controller": {"sim/nostarter/ctrl": {}}}}})
    error = refused("--tango-host", facility.tango_host, "--config", config, "--host", "nosuchhost")
    assert "no Starter on host 'nosuchhost'" in error and "tango/admin/nosuchhost" in error


def test_server_deploy_did_not_create_is_left_alone(facility, refused, write_config) -> None:
    db = facility.database()
    theirs = tango.DbDevInfo()
    theirs.name, theirs._class, theirs.server = "their/ctrl/1", "Automation1Controller", "Automation1/theirs"
    db.add_device(theirs)
    config = write_config({"Automation1": {"theirs": {"Automation1Controller": {"their/ctrl/1": {}}}}})
    error = refused("--tango-host", facility.tango_host, "--config", config)
    assert "server Automation1/theirs already exists" in error and "--adopt" in error
