"""What one client may do on a device under Tango's access control, as user USER (empty: this one).

    python access_client.py TANGO_HOST DEVICE ATTRIBUTE COMMAND ADMIN_COMMAND [USER]

Connects to the database as this process's user, then, with USER, takes USER's rights by setting
the effective UID (cppTango's AccessProxy reads the user from geteuid(), on the first DeviceProxy).
Reads ATTRIBUTE and State, subscribes to ATTRIBUTE's change events, writes ATTRIBUTE's own value
back, runs COMMAND, and runs ADMIN_COMMAND on the device's admin device only when the access is
read-only (where it must be refused). Prints one JSON line: the access granted and each outcome
("ok" or Tango's reason).
"""

import json
import os
import pwd
import sys

import tango


def outcome(call) -> str:
    try:
        call()
    except tango.DevFailed as exc:
        return exc.args[0].reason
    return "ok"


def main() -> None:
    tango_host, device, attribute, command, admin_command, *user = sys.argv[1:]
    db = tango.Database(*tango_host.split(":"))  # the ORB starts with this process's own rights
    if user:
        os.seteuid(pwd.getpwnam(user[0]).pw_uid)
    proxy = tango.DeviceProxy(f"tango://{tango_host}/{device}")
    proxy.set_timeout_millis(3000)
    value = proxy.read_attribute(attribute).value
    access = proxy.get_access_control()
    result = {
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "access": str(access),
        "read": outcome(lambda: proxy.read_attribute(attribute)),
        "state": outcome(proxy.state),
        "subscribe": outcome(
            lambda: proxy.unsubscribe_event(
                proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, lambda event: None)
            )
        ),
        "write": outcome(lambda: proxy.write_attribute(attribute, value)),
        "command": outcome(lambda: proxy.command_inout(command)),
    }
    if access == tango.AccessControlType.ACCESS_READ:
        admin = tango.DeviceProxy(f"tango://{tango_host}/dserver/{proxy.info().server_id}")
        result["admin_command"] = outcome(lambda: admin.command_inout(admin_command))
    del db
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
