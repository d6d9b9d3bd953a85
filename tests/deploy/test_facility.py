"""The facility fixture itself: the C++ DataBaseds on MariaDB answers, and Starter runs for this host;
and how Starter recognises a running server."""

import subprocess
import sys

import tango

from tango_servers.stack.mariadb import same_named_processes


def test_databaseds_runs_on_mariadb_with_the_packaged_schema(facility) -> None:
    db = facility.database()
    assert "DataBaseds/2" in db.get_server_list()
    # The packaged schema's stored procedures and class properties are there.
    assert db.get_class_property("Starter", ["AllowedAccessCmd"])["AllowedAccessCmd"]
    assert facility.mariadb.sql("SHOW TABLES", database="tango").split().count("device") == 1


def test_starter_answers_for_this_host(facility) -> None:
    starter = facility.proxy(facility.starter_device)
    # ON, or ALARM once a server it controls is stopped; MOVING while one starts or stops.
    assert starter.state() in (tango.DevState.ON, tango.DevState.ALARM, tango.DevState.MOVING)
    assert starter.info().dev_class == "Starter"


def test_same_named_processes_finds_what_starter_would_take_for_a_server(tmp_path) -> None:
    """Starter matches `python <dir>/<Server> <instance>` by script name and instance (any case)."""
    script = tmp_path / "Automation1"
    script.write_text("import sys\nsys.stdin.read()\n")  # runs until its stdin closes
    look_alike = subprocess.Popen([sys.executable, str(script), "LookAlike"], stdin=subprocess.PIPE)
    try:
        assert look_alike.pid in same_named_processes("Automation1/lookalike")
        assert look_alike.pid not in same_named_processes("Automation1/other")
        assert look_alike.pid not in same_named_processes("Pilatus/lookalike")
    finally:
        look_alike.stdin.close()
        look_alike.wait(10)
