"""The bluesky roles a device class declares, stored in the database for clients to find."""

from __future__ import annotations

import logging
import threading

import tango
from tango.server import Device

from ophyd_tango.core.errors import error_text

__all__ = ["publish_roles"]

log = logging.getLogger(__name__)

_published: set[str] = set()
_lock = threading.Lock()


def publish_roles(device: Device) -> None:
    """Store the class's default `bluesky_roles` as its class property, once per class and process.

    Roles already in the database (configured) are kept; a database that cannot be written is
    logged, and the device runs on.
    """
    cls = type(device).__name__
    with _lock:
        if cls in _published:
            return
        try:
            db = tango.Util.instance().get_database()
            if not list(db.get_class_property(cls, ["bluesky_roles"])["bluesky_roles"]):
                db.put_class_property(cls, {"bluesky_roles": list(device.bluesky_roles)})
        except tango.DevFailed as exc:
            log.warning("%s: cannot publish bluesky_roles: %s", cls, error_text(exc))
            return
        _published.add(cls)
