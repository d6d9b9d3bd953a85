"""What `tango-suite status` reports: one row per device (and per service), live states included.

The JSON form (`status --json`) is a list of objects with these keys, kept stable:
`server`, `device`, `state`, `pid`, `port`, `status`, `uptime`, `restarts`.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tango

STATE_TIMEOUT_MS = 1000
SERVICE_NAMES = {"redis": "redis-server", "tiled": "tiled"}  # components that are not Tango servers


def device_state(tango_host: str, device: str) -> str:
    """The device's State() as a label, or UNREACHABLE."""
    try:
        proxy = tango.DeviceProxy(f"tango://{tango_host}/{device}")
        proxy.set_timeout_millis(STATE_TIMEOUT_MS)
        return str(proxy.state())
    except tango.DevFailed:
        return "UNREACHABLE"


def stack_status(current: dict[str, Any]) -> list[dict[str, Any]]:
    tango_host = current["tango_host"]
    now = time.time()
    rows = []
    for component in current.get("components", []):
        base = {
            "pid": component["pid"],
            "port": component["port"],
            "status": component["status"],
            "uptime": round(now - component["started_at"], 1) if component.get("started_at") else None,
            "restarts": component["restarts"],
        }
        if component["kind"] == "server":
            rows += [{"server": component["name"], "device": device, **base} for device in component["devices"]]
        elif component["kind"] == "database":
            rows.append({"server": "DataBaseds/2", "device": "sys/database/2", **base})
        else:
            server = SERVICE_NAMES.get(component["kind"], component["kind"])
            rows.append({"server": server, "device": None, "state": component["status"], **base})
    devices = [row["device"] for row in rows if row["device"] is not None]
    with ThreadPoolExecutor(max_workers=8) as pool:
        states = dict(zip(devices, pool.map(lambda d: device_state(tango_host, d), devices), strict=True))
    for row in rows:
        row.setdefault("state", states.get(row["device"]))
    return [
        {key: row[key] for key in ("server", "device", "state", "pid", "port", "status", "uptime", "restarts")}
        for row in rows
    ]


def status_table(rows: list[dict[str, Any]]) -> str:
    header = ("server", "device", "state", "pid", "port", "restarts")
    lines = [[str(row[key]) if row[key] is not None else "-" for key in header] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines]
    )
