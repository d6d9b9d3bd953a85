"""Device names: the key a device is known by, whatever host prefix or suffix a TRL carries."""

from __future__ import annotations

import re

__all__ = ["device_key", "identifier", "python_names"]

_HOST_PREFIX = re.compile(r"^(tango://)?[^/]+:\d+/", re.IGNORECASE)


def device_key(trl: str) -> str:
    """'tango://host:10000/Sim/Aerotech/X#dbase=no' -> 'sim/aerotech/x'."""
    return _HOST_PREFIX.sub("", trl.split("#")[0]).lower()


def identifier(name: str) -> str:
    """A Python identifier for a Tango attribute, command or device name (lower case)."""
    if name.isidentifier() and name.isascii():
        return name.lower() if not name[:1].isdigit() else f"_{name.lower()}"
    ident = re.sub(r"\W", "_", name).lower()
    return f"_{ident}" if ident[:1].isdigit() else ident


def python_names(devices: list[str], aliases: dict[str, str]) -> dict[str, str]:
    """Device -> flat name: its alias, else its member; family_member when members collide.

    The names `ophyd_tango.connect` gives devices, and the Redis bridge's BEC device names."""
    members: dict[str, int] = {}
    for device in devices:
        if device not in aliases:
            member = identifier(device.split("/")[-1])
            members[member] = members.get(member, 0) + 1
    names = {}
    for device in devices:
        if device in aliases:
            names[device] = identifier(aliases[device])
            continue
        _, family, member = device.split("/")
        ident = identifier(member)
        if members[ident] > 1 or ident[:1] == "_":
            ident = identifier(f"{family}_{member}")
        names[device] = ident
    return names
