"""Wiring the bridges to the services the launcher provides, through their device properties.

The launcher writes what it chose (Redis URL, PVA ports) into the bridge devices' properties
before loading the configuration, so Jive shows it and the bridges read it like any property.
Values already present in the configuration are kept.
"""

from pathlib import Path
from typing import Any

from .config import SuiteConfig
from .processes import LOOPBACK, free_port


def wire_services(
    config: SuiteConfig, redis_url: str | None, redis_password_file: Path | None = None
) -> dict[str, Any]:
    """Fill in bridge properties in `config` and return the client settings for `tango-suite env`.

    The launcher's Redis password reaches the bridge as a file name, so the Tango database never
    holds it.
    """
    services: dict[str, Any] = {}
    for spec in config.servers:
        for device in spec.devices:
            properties = config.device_properties(device)
            if spec.server == "RedisBridge":
                if redis_url and "redis_url" not in properties:
                    properties["redis_url"] = [redis_url]
                    if redis_password_file:
                        properties.setdefault("redis_password_file", [str(redis_password_file)])
                services["redis_url"] = properties.get("redis_url", [None])[0]
            elif spec.server == "PvaBridge":
                properties.setdefault("server_port", [str(free_port())])
                properties.setdefault("broadcast_port", [str(free_port())])
                services["pva"] = pva_client_settings(
                    int(properties["server_port"][0]), int(properties["broadcast_port"][0])
                )
    return services


def pva_client_settings(server_port: int, broadcast_port: int) -> dict[str, str]:
    """EPICS_PVA_* settings that make a p4p client find the bridge on loopback only."""
    return {
        "EPICS_PVA_NAME_SERVERS": f"{LOOPBACK}:{server_port}",
        "EPICS_PVA_ADDR_LIST": LOOPBACK,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(broadcast_port),
        "EPICS_PVA_SERVER_PORT": str(server_port),
    }
