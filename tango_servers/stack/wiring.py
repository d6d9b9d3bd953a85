"""Wiring the bridges to the services the launcher provides, through their device properties.

The launcher writes what it chose (Redis URL, PVA ports) into the bridge devices' properties
before loading the configuration, so Jive shows it and the bridges read it like any property.
Values already present in the configuration are kept. The default stack gives the PVA bridge
the standard EPICS ports when they are free (`pva_ports`); test stacks take free ones.
"""

import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .config import SuiteConfig
from .processes import LOOPBACK, free_port, port_in_use

# EPICS_PVA_SERVER_PORT and EPICS_PVA_BROADCAST_PORT when unset: what pvget and ophyd-async try.
STANDARD_PVA_PORTS = (5075, 5076)


def wire_services(
    config: SuiteConfig,
    redis_url: str | None,
    redis_password_file: Path | None = None,
    *,
    standard_pva_ports: bool = False,
) -> dict[str, Any]:
    """Fill in bridge properties in `config` and return the client settings for `tango-suite env`.

    The launcher's Redis password reaches the bridge as a file name, so the Tango database never
    holds it. `standard_pva_ports`: the PVA bridge gets 5075/5076 where free (the default stack).
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
                interface = properties.get("interface", [LOOPBACK])[0]
                tcp, udp = pva_ports(standard_pva_ports, partial(tcp_port_free, interface=interface), udp_port_free)
                properties.setdefault("server_port", [str(tcp)])
                properties.setdefault("broadcast_port", [str(udp)])
                services["pva"] = pva_client_settings(
                    int(properties["server_port"][0]), int(properties["broadcast_port"][0])
                )
    return services


def pva_ports(standard: bool, tcp_free: Callable[[int], bool], udp_free: Callable[[int], bool]) -> tuple[int, int]:
    """(TCP, UDP search) ports for the PVA bridge: each standard one when `standard` and free
    by its check, else a free port."""
    tcp, udp = STANDARD_PVA_PORTS
    return (
        tcp if standard and tcp_free(tcp) else free_port(),
        udp if standard and udp_free(udp) else free_port(),
    )


def tcp_port_free(port: int, interface: str = LOOPBACK) -> bool:
    return not port_in_use(port, interface)


def udp_port_free(port: int) -> bool:
    """Whether a PVA server can bind the UDP search port: free, or shared by EPICS servers
    (pvxs binds 0.0.0.0 with SO_REUSEADDR, so servers on one host share 5076)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def pva_client_settings(server_port: int, broadcast_port: int) -> dict[str, str]:
    """EPICS_PVA_* settings that make a p4p client find the bridge on loopback only."""
    return {
        "EPICS_PVA_NAME_SERVERS": f"{LOOPBACK}:{server_port}",
        "EPICS_PVA_ADDR_LIST": LOOPBACK,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(broadcast_port),
        "EPICS_PVA_SERVER_PORT": str(server_port),
    }
