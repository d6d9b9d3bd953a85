"""Device names: the key a device is known by, whatever host prefix or suffix a TRL carries."""

from __future__ import annotations

import re

__all__ = ["device_key", "identifier"]

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
