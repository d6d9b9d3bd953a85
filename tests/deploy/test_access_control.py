"""Tango's own access control (Debian's tango-accesscontrol) on the MariaDB deployment: a user, or a
user from a host, given read-only access can read, ask State and subscribe, but cannot write, run
commands, or Kill the server through its admin device; everyone else keeps write access.

The rules are the upstream server's own commands (AddAddressForUser, AddDeviceForUser), as Astor
sends them; each check runs in its own client process (tests/deploy/access_client.py), because a
client reads its rights once, when it builds its first DeviceProxy.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tango

from tango_servers.stack.mariadb import ACCESS_CONTROL, ACCESS_CONTROL_DEVICE, Facility

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
DEVICE, ATTRIBUTE, COMMAND, ADMIN_COMMAND = "sim/aerotech/x", "velocity", "Stop", "Kill"
READ_ONLY_USER = "nobody"  # read-only on every device, from every host
FOREIGN_HOST_USER = "daemon"  # may write, but only from 198.18.255.1: from this host it may only read
REFUSED = "API_ReadOnlyMode"


@pytest.fixture(scope="module")
def access_control(facility: Facility, deployed, servers) -> Iterator[tango.DeviceProxy]:
    if not ACCESS_CONTROL.exists():
        pytest.skip("Tango's TangoAccessControl is missing: run 'make debian-packages' as root")
    facility.start_server(servers[0])
    facility.enable_access_control()
    control = facility.proxy(ACCESS_CONTROL_DEVICE)
    control.command_inout("AddAddressForUser", [READ_ONLY_USER, "*.*.*.*"])
    control.command_inout("AddDeviceForUser", [READ_ONLY_USER, "*/*/*", "read"])
    control.command_inout("AddAddressForUser", [FOREIGN_HOST_USER, "198.18.255.1"])
    control.command_inout("AddDeviceForUser", [FOREIGN_HOST_USER, "*/*/*", "write"])
    try:
        yield control
    finally:
        # The service stays up for the session: a client that found it keeps asking it (and would
        # get read-only access once it is gone). The default rule gives everyone else write access.
        for user in (READ_ONLY_USER, FOREIGN_HOST_USER):
            control.command_inout("RemoveUser", user)
        facility.stop_server(servers[0])


def client(facility: Facility, *user: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / "access_client.py"), facility.tango_host, DEVICE, ATTRIBUTE, COMMAND,
         ADMIN_COMMAND, *user],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("user", [READ_ONLY_USER, FOREIGN_HOST_USER])
def test_read_only_user_or_host_cannot_write_or_command(facility, access_control, user) -> None:
    result = client(facility, user)
    assert result["user"] == user and result["access"] == "ACCESS_READ"
    assert (result["read"], result["state"], result["subscribe"]) == ("ok", "ok", "ok")
    assert (result["write"], result["command"], result["admin_command"]) == (REFUSED, REFUSED, REFUSED)
    assert facility.proxy(DEVICE).state() != tango.DevState.FAULT  # the server is still serving


def test_everyone_else_keeps_write_access(facility, access_control) -> None:
    result = client(facility)
    assert result["access"] == "ACCESS_WRITE"
    assert (result["read"], result["write"], result["command"]) == ("ok", "ok", "ok")
