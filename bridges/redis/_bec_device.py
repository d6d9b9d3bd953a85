"""One Tango device as BEC sees it: a flat name, its signals and their kinds from the device's roles.

The kinds are ophyd_tango's (`ophyd_tango.core.roles.signal_kinds` of the roles `choose_roles` picks,
as a `TangoDevice` gets them), so BEC's reading of a device is what `TangoDevice.read()` returns:
the same signals, under the same names (`{name}_{attribute}`, the readback of a movable device
named after the device), values as `AttributeType.to_bluesky` gives them.

`info()` is the `info` of BEC's DeviceInfoMessage, in the layout of bec_server's
`device_server/devices/device_serializer.py::get_device_info` for that `TangoDevice`; `config()`
is its entry in BEC's device config (`bec_lib/atlas_models.py::Device`).
"""

from dataclasses import dataclass, field
from typing import Any

import tango

from ophyd_tango.core.errors import error_text
from ophyd_tango.core.names import identifier
from ophyd_tango.core.roles import Roles, choose_roles, declared_roles, signal_kinds
from ophyd_tango.core.types import AttributeType

from ._bec import BecEndpoints, bec_value

__all__ = ["BecDevice", "device_roles"]

# The public names of bec_lib's device proxies (`bec_lib/device.py` 4.3: Device, and Positioner's
# own), which a signal must not take: BEC's device server refuses such a component, and its
# client would lose the method. Signals of those names take `{name}_attr`, as ophyd_tango's
# components do where ophyd reserves a name (tests/bridges/redis/test_bec.py checks the lists).
BEC_DEVICE_NAMES = frozenset({
    "add_device_tag", "configure", "describe", "describe_configuration", "description", "dotted_name",
    "enabled", "full_name", "get", "get_device_tags", "on_failure", "put", "read", "read_configuration",
    "read_only", "readout_priority", "remove_device_tag", "root", "set_device_tags", "set_user_parameter",
    "software_trigger", "stage", "stop", "summary", "trigger", "unstage", "update_user_parameter",
    "user_parameter", "wm",
})  # fmt: skip
BEC_POSITIONER_NAMES = frozenset({
    "egu", "high_limit", "limits", "low_limit", "move", "moving", "position", "set", "settle_time", "timeout",
})  # fmt: skip
# ophyd's Kind values, which BEC's device info carries beside the names (kind_int, kind_str).
KIND_VALUES = {"omitted": 0, "normal": 1, "config": 2, "hinted": 5}
READ_KINDS = ("hinted", "normal")


@dataclass(frozen=True)
class DeviceRoles:
    """What the roles of a device are chosen from, asked of the device once."""

    dev_class: str
    roles: Roles
    source: str  # "tango://host:port/domain/family/member", as ophyd_tango's data keys name it
    problem: str = ""  # why the roles could not be asked for, if they could not


def device_roles(proxy: tango.DeviceProxy, types: dict[str, AttributeType]) -> DeviceRoles:
    """The device's class and roles, as `TangoDevice` chooses them (conventions, then `bluesky_roles`);
    a device that does not answer gets no roles (the default read set), and says why."""
    source = f"tango://{proxy.get_db_host()}:{proxy.get_db_port()}/{proxy.dev_name().lower()}"
    try:
        dev_class = proxy.info().dev_class
        commands = {info.cmd_name: info for info in proxy.command_list_query()}
    except tango.DevFailed as exc:
        return DeviceRoles("", Roles(), source, f"no roles: {error_text(exc)}")
    roles = choose_roles(dev_class, types, commands, declared_roles(proxy, dev_class), None)
    return DeviceRoles(dev_class, roles, source)


@dataclass
class BecDevice:
    """A bridged device's BEC name, endpoints, signal kinds and last reading and configuration."""

    name: str
    device: str  # the Tango device name
    described: DeviceRoles
    types: dict[str, AttributeType] = field(default_factory=dict)  # followed attributes, lower-case name
    kinds: dict[str, str] = field(default_factory=dict)  # attribute (server's spelling) -> ophyd kind name
    reading: dict[str, dict[str, Any]] = field(default_factory=dict)
    configuration: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.readback_key = BecEndpoints.readback(self.name)
        self.read_key = BecEndpoints.read(self.name)
        self.configuration_key = BecEndpoints.read_configuration(self.name)
        self.progress_key = BecEndpoints.progress(self.name)
        self.file_event_key = BecEndpoints.file_event(self.name)
        self.info_key = BecEndpoints.device_info(self.name)

    @property
    def roles(self) -> Roles:
        return self.described.roles

    @property
    def movable(self) -> bool:
        return self.roles.movable

    def learn(self, all_types: dict[str, AttributeType], followed: list[AttributeType]) -> None:
        """Take newly followed attributes; the kinds come from all the device's attributes."""
        self.types.update((info.name.lower(), info) for info in followed)
        self.kinds = signal_kinds(all_types, self.roles)

    def signal_name(self, attribute: str) -> str:
        """The attribute's signal name, as ophyd names a TangoDevice's signal (BEC's obj_name)."""
        readback = self.roles.get("readback") or self.roles.get("setpoint")
        if self.movable and readback and attribute.lower() == readback.lower():
            return self.name
        return f"{self.name}_{identifier(attribute)}"

    def component_name(self, attribute: str) -> str:
        """The attribute's name on BEC's device proxy (`dev.x.velocity`)."""
        name = identifier(attribute)
        reserved = name in BEC_DEVICE_NAMES or (self.movable and name in BEC_POSITIONER_NAMES)
        return f"{name}_attr" if reserved else name

    def reading_signal(self, info: AttributeType) -> str | None:
        """The attribute's name in the device's reading, if read() reads it. Images and encoded
        values stay out of BEC readings: BEC carries images as previews."""
        if self.kinds.get(info.name) not in READ_KINDS or info.is_image or info.kind == "encoded":
            return None
        return self.signal_name(info.name)

    def configuration_signal(self, info: AttributeType) -> str | None:
        """The attribute's name in read_configuration(), if it is configuration."""
        return self.signal_name(info.name) if self.kinds.get(info.name) == "config" else None

    @staticmethod
    def entry(info: AttributeType, value: Any, timestamp: float) -> dict[str, Any]:
        """{value, timestamp} as ophyd_tango's read() gives it, in BEC's encoding."""
        return {"value": bec_value(info.to_bluesky(value)), "timestamp": float(timestamp)}

    # -- BEC's device info and config ---------------------------------------------------------
    def _data_key(self, info: AttributeType) -> dict[str, Any]:
        return info.data_key(f"{self.described.source}/{info.name}")

    def info(self) -> dict[str, Any]:
        """The DeviceInfoMessage `info`: signals with kinds and describe, hints, describe(_configuration)."""
        signals: dict[str, Any] = {}
        describe: dict[str, Any] = {}
        describe_configuration: dict[str, Any] = {}
        hinted: list[str] = []
        for info in sorted(self.types.values(), key=lambda t: t.name.lower()):
            kind = self.kinds.get(info.name, "omitted")
            name, data_key = self.signal_name(info.name), self._data_key(info)
            component = self.component_name(info.name)
            signals[component] = {
                "component_name": component,
                "signal_class": "TangoSignal",
                "obj_name": name,
                "kind_int": KIND_VALUES[kind],
                "kind_str": kind,
                "doc": info.description or info.name,
                "describe": data_key,
                "metadata": {
                    "connected": True,
                    "read_access": True,
                    "write_access": info.is_writable,
                    "timestamp": 0.0,
                    "status": None,
                    "severity": None,
                    "precision": info.precision,
                    "tango_attribute": info.name,
                    "units": info.unit,
                },
                "labels": [],
            }
            if kind in READ_KINDS:
                describe[name] = data_key
            elif kind == "config":
                describe_configuration[name] = data_key
            if kind == "hinted":
                hinted.append(name)
        readback = self.types.get((self.roles.get("readback") or self.roles.get("setpoint") or "").lower())
        egu = (readback.unit or "") if self.movable and readback is not None else None
        dev_class = self.described.dev_class
        return {
            "device_attr_name": "",
            "device_base_class": "positioner" if self.movable else "device",
            "device_class": f"TangoDevice_{identifier(dev_class)}" if dev_class else "TangoDevice",
            "ownership_mode": "claimable",
            "read_access": None,
            "write_access": None,
            "signals": signals,
            "hints": {"fields": hinted},
            "describe": describe,
            "describe_configuration": {**describe_configuration, "egu": egu},
            "sub_devices": [],
            "custom_user_access": {},
        }

    def config(self) -> dict[str, Any]:
        """The device's entry in BEC's device config: an ophyd_tango TangoDevice of this Tango device."""
        kind = self.roles.kind
        return {
            "name": self.name,
            "deviceClass": "ophyd_tango.TangoDevice",
            "deviceConfig": {"trl": self.device},
            "enabled": True,
            "readoutPriority": "baseline" if self.movable else ("async" if kind == "detector" else "monitored"),
            "readOnly": True,  # the bridge publishes; nothing moves a device through it
            "softwareTrigger": False,
            "deviceTags": ["tango", kind],
            "description": f"Tango {self.described.dev_class or 'device'} {self.device}",
            "onFailure": "retry",
        }
