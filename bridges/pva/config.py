"""What the PVA bridge exports, under which names, and where it listens.

The configuration comes from the `sys/bridge/pva` device properties (so Jive shows it), or from
a YAML file named by the `config_file` property with the same keys; properties set on the
device win over the file:

    devices: ["sim/*/*"]              # Tango device name globs
    attributes: ["*"]                 # attribute name globs ("position") or "device/attribute" globs
    exclude_attributes: []            # globs of the same forms, removed from the export
    put_allowlist: []                 # "device/attribute" globs that PVA clients may write
    prefix: ""                        # prepended to every PV name, e.g. "BL1:"
    server_port: 5075                 # PVA TCP port (0: any free port)
    broadcast_port: 5076              # PVA UDP search port (0: any free port)
    interface: 127.0.0.1              # IPv4 address the server binds, answers on and announces
    search_relay: true                # with a loopback interface, relay this host's settings-free searches

The TCP listener binds `interface`; searches are answered only when addressed to it (or, for
0.0.0.0, to any local address), and beacons go to it only. pvxs, p4p's server library, binds its
UDP sockets to the wildcard address on every platform (pvxs src/udp_collector.cpp, "Always bind
to wildcard") and drops the searches not addressed to a configured interface; see docs/pva.md.
With a loopback interface and `search_relay`, the bridge also takes the searches clients of this
host broadcast when they have no EPICS settings (`search_relay.py`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ophyd_tango.core.discovery import attribute_matches

from ..core import Selection

__all__ = ["LOOPBACK", "BridgeConfig", "pv_name"]

LOOPBACK = "127.0.0.1"
_LIST_KEYS = ("devices", "attributes", "exclude_attributes", "put_allowlist")
_KNOWN_KEYS = (*_LIST_KEYS, "prefix", "server_port", "broadcast_port", "interface", "search_relay")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def pv_name(device: str, attribute: str, prefix: str = "") -> str:
    """`sim/aerotech/x`, `position` -> `SIM:AEROTECH:X:position` (after `prefix`)."""
    return f"{prefix}{device.upper().replace('/', ':')}:{attribute}"


@dataclass(frozen=True)
class BridgeConfig:
    """The bridge's configuration; see the module docstring for the keys."""

    devices: tuple[str, ...] = ("sim/*/*",)
    attributes: tuple[str, ...] = ("*",)
    exclude_attributes: tuple[str, ...] = ()
    put_allowlist: tuple[str, ...] = ()
    prefix: str = ""
    server_port: int = 5075
    broadcast_port: int = 5076
    interface: str = LOOPBACK
    search_relay: bool = True

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.interface)
        except ValueError:
            raise ValueError(
                f"PVA bridge interface {self.interface!r} is not an IPv4 address: "
                f"give an address of this host, {LOOPBACK} (the default) or 0.0.0.0 (every interface)"
            ) from None
        for key in ("server_port", "broadcast_port"):
            port = getattr(self, key)
            if not 0 <= port <= 65535:
                raise ValueError(f"PVA bridge {key} {port} is not a port number: 0 (any free port) to 65535")

    @property
    def wildcard(self) -> bool:
        """True when the server listens on every interface (0.0.0.0)."""
        return ipaddress.IPv4Address(self.interface).is_unspecified

    @property
    def relays_searches(self) -> bool:
        """True when the bridge relays this host's settings-free searches (loopback interface only)."""
        return self.search_relay and ipaddress.IPv4Address(self.interface).is_loopback

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BridgeConfig:
        """From a dict of property-like values (lists of strings, or plain YAML values)."""
        unknown = sorted(set(values) - set(_KNOWN_KEYS))
        if unknown:
            raise ValueError(f"unknown PVA bridge setting(s) {', '.join(unknown)}; known: {', '.join(_KNOWN_KEYS)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in _LIST_KEYS:
                kwargs[key] = tuple(str(v) for v in ([value] if isinstance(value, str) else value))
            else:
                single = value[0] if isinstance(value, list | tuple) else value
                if key.endswith("_port"):
                    kwargs[key] = _port(key, single)
                elif key == "search_relay":
                    kwargs[key] = _boolean(key, single)
                else:
                    kwargs[key] = str(single)
        return cls(**kwargs)

    @classmethod
    def load(cls, properties: dict[str, Any], config_file: str | None = None) -> BridgeConfig:
        """Device properties over the YAML file `config_file` (when given) over the defaults."""
        values: dict[str, Any] = {}
        if config_file:
            import yaml

            path = Path(config_file).expanduser()
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except OSError as exc:
                raise ValueError(f"cannot read PVA bridge config_file {path}: {exc.strerror}") from exc
            if not isinstance(loaded, dict):
                raise ValueError(f"PVA bridge config_file {path} must hold a mapping of settings")
            values.update(loaded)
        values.update({k: v for k, v in properties.items() if v not in (None, [], ())})
        return cls.from_mapping(values)

    def exports_device(self, device: str) -> bool:
        return any(fnmatchcase(device.lower(), pattern.lower()) for pattern in self.devices)

    def selection(self, exclude_devices: tuple[str, ...] = ()) -> Selection:
        """What the bridge's core follows: these globs, less `exclude_devices`."""
        return Selection(self.devices, exclude_devices, self.attributes, self.exclude_attributes)

    def exports(self, device: str, attribute: str) -> bool:
        """True when `device`'s `attribute` is published (attribute globs minus exclusions)."""
        return self.selection().follows(device, attribute)

    def allows_put(self, device: str, attribute: str) -> bool:
        return attribute_matches(self.put_allowlist, device, attribute)

    def pv_name(self, device: str, attribute: str) -> str:
        return pv_name(device, attribute, self.prefix)

    def server_conf(self) -> dict[str, str]:
        """p4p Server configuration: listen, answer searches and send beacons on `interface` only
        (on 0.0.0.0, beacons go to every interface's broadcast address, as pvxs does by default)."""
        return {
            "EPICS_PVAS_INTF_ADDR_LIST": self.interface,
            "EPICS_PVAS_BEACON_ADDR_LIST": "" if self.wildcard else self.interface,
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "YES" if self.wildcard else "NO",
            "EPICS_PVAS_SERVER_PORT": str(self.server_port),
            "EPICS_PVAS_BROADCAST_PORT": str(self.broadcast_port),
        }


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return _BOOLEANS[str(value).strip().lower()]
    except KeyError:
        raise ValueError(f"PVA bridge {key} {value!r} is not a boolean: true or false") from None


def _port(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"PVA bridge {key} {value!r} is not a port number: 0 (any free port) to 65535") from None
