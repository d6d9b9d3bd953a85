"""Finding devices and attributes: the database, exported devices by glob, attribute filters.

db = database("127.0.0.1:10000", timeout=3.0)
exported_devices(db, ["sim/*/*"], exclude=["sys/bridge/*"])   # -> ["sim/aerotech/ctrl", ...]
attribute_matches(["position", "sim/oav/1/image*"], "sim/oav/1", "image")      # -> True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

import tango

from .errors import TangoDeviceError

__all__ = [
    "ADMIN_FAMILIES",
    "attribute_matches",
    "database",
    "database_host",
    "defined_devices",
    "exported_devices",
    "unknown_device_error",
]

# Devices every Tango database has, which no client follows: admin, database, access control.
ADMIN_FAMILIES = ("dserver/", "sys/database/", "sys/access_control/")


def database(tango_host: str | None = None, timeout: float = 3.0) -> tango.Database:
    """The Tango database at `tango_host` ("host:port"), else at $TANGO_HOST."""
    if tango_host:
        host, _, port = tango_host.rpartition(":")
        db = tango.Database(host, int(port))
    else:
        db = tango.Database()
    db.set_timeout_millis(int(timeout * 1000))
    return db


def database_host(db: tango.Database) -> str:
    """'host:port' of a database."""
    return f"{db.get_db_host()}:{db.get_db_port()}"


def _matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern.lower()) for pattern in patterns)


def exported_devices(db: tango.Database, patterns: Sequence[str] = ("*",), exclude: Iterable[str] = ()) -> list[str]:
    """Exported devices matching any glob of `patterns`, lower case and sorted, without the
    admin families and without those matching a glob of `exclude`."""
    exclude = [pattern.lower() for pattern in exclude]
    found: set[str] = set()
    for pattern in patterns:
        for name in db.get_device_exported(pattern):
            name = name.lower()
            if not name.startswith(ADMIN_FAMILIES) and not _matches_any(name, exclude):
                found.add(name)
    return sorted(found)


def defined_devices(db: tango.Database, patterns: Sequence[str] = ("*",), exclude: Iterable[str] = ()) -> list[str]:
    """Like `exported_devices`, but every device defined in the database, running or not (what a
    bridge waits for)."""
    exclude = [pattern.lower() for pattern in exclude]
    found: set[str] = set()
    for pattern in patterns:
        for name in db.command_inout("DbGetDeviceWideList", pattern):
            name = name.lower()
            if not name.startswith(ADMIN_FAMILIES) and not _matches_any(name, exclude):
                found.add(name)
    return sorted(found)


def attribute_matches(patterns: Iterable[str], device: str, attribute: str) -> bool:
    """Whether `attribute` of `device` matches a glob of `patterns` (case-insensitive): a pattern
    with a '/' matches 'domain/family/member/attribute', one without the attribute name alone."""
    name = attribute.lower()
    full = f"{device.lower()}/{name}"
    return any(fnmatchcase(full if "/" in p else name, p.lower()) for p in patterns)


def unknown_device_error(name: str, tango_host: str | None = None) -> TangoDeviceError:
    """'no device X in the Tango database at H; did you mean ...' (close matches by difflib)."""
    try:
        db = database(tango_host)
        candidates = exported_devices(db) + list(db.get_device_alias_list("*"))
        where = f" in the Tango database at {database_host(db)}"
    except tango.DevFailed:
        candidates, where = [], ""
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=5, cutoff=0.7)
    hint = f"; did you mean {', '.join(close)}?" if close else "; no similar name is exported"
    return TangoDeviceError(f"no device {name!r}{where}{hint}", "API_DeviceNotDefined")
