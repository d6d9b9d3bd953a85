"""The facility fixture itself: the C++ DataBaseds on MariaDB answers, and Starter runs for this host."""

import tango


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
