"""Finding devices in the Tango database: `connect(pattern)` and helpful unknown-name errors."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tango

from ._device import TangoDevice
from .core.discovery import database, database_host, exported_devices, unknown_device_error
from .core.names import identifier, python_names

__all__ = ["connect", "database", "unknown_device_error"]

logger = logging.getLogger(__name__)


def _unshadowed(names: dict[str, str], namespace: dict[str, Any]) -> dict[str, str]:
    """The names, each one already bound in `namespace` to something other than that same device
    replaced by its full 'domain_family_member' (with a warning): connect never shadows."""
    unshadowed = {}
    for device, name in names.items():
        bound = namespace.get(name)
        if bound is not None and getattr(getattr(bound, "_link", None), "key", None) != device:
            full = identifier(device.replace("/", "_"))
            message = f"connect: {name} is taken in the namespace ({type(bound).__name__}); {device} is {full}"
            logger.warning(message)
            warnings.warn(message, stacklevel=3)
            name = full
        unshadowed[device] = name
    return unshadowed


def connect(
    pattern: str = "*/*/*",
    *,
    tango_host: str | None = None,
    into: dict[str, Any] | None = None,
    timeout: float = 3.0,
    events: bool = True,
) -> dict[str, Any]:
    """Build a TangoDevice for every exported device matching `pattern` (e.g. "sim/*/*").

    Names are device aliases, else members ("x" for sim/aerotech/x), else family_member
    ("tg_test_1" for sys/tg_test/1). `into=globals()` also puts them in a namespace, never
    rebinding a name that holds something else there. A pattern matching nothing raises
    LookupError listing close names; a device that cannot be built is left out with a warning
    saying why.
    """
    host = tango_host or os.environ.get("TANGO_HOST")
    db = database(tango_host, timeout)
    devices = exported_devices(db, [pattern])
    if not devices:
        every = exported_devices(db)
        known_aliases = list(db.get_device_alias_list("*"))
        close = difflib.get_close_matches(pattern.lower(), [d.lower() for d in every + known_aliases], n=5, cutoff=0.4)
        hint = f"; close names: {', '.join(close)}" if close else f"; exported: {', '.join(sorted(every)[:20])}"
        raise LookupError(f"no exported device matches {pattern!r} in the Tango database at {database_host(db)}{hint}")
    aliases: dict[str, str] = {}
    for device in devices:
        with contextlib.suppress(tango.DevFailed):
            aliases[device] = db.get_alias_from_device(device)
    names = python_names(devices, aliases)
    if into is not None:
        names = _unshadowed(names, into)
    prefix = f"tango://{host}/" if tango_host else ""

    def build(device: str) -> Any:
        return TangoDevice(f"{prefix}{device}", name=names[device], timeout=timeout, events=events)

    built: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=min(8, len(devices))) as pool:
        futures = {device: pool.submit(build, device) for device in devices}
    for device, future in futures.items():
        try:
            built[names[device]] = future.result()
        except Exception as exc:
            message = f"connect: left out {device}: {exc}"
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
    if into is not None:
        into.update(built)
    return built
