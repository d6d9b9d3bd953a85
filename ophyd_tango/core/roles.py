"""Which bluesky role each attribute and command of a device plays, chosen at connection time.

Three sources, later ones win key by key:
1. conventions for devices we did not write (Sardana motors and counters, LimaCCDs, any device
   with a writable `position`),
2. what the server declares: the `bluesky_roles` class or device property, `key=value` strings,
3. what the user passes (`TangoDevice(..., roles=..., **overrides)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import tango

from .types import AttributeType

__all__ = [
    "ROLE_KEYS",
    "Roles",
    "choose_roles",
    "declared_roles",
    "first_declared",
    "parse_roles",
    "role_lookups",
    "signal_kinds",
]

# For `declared_roles`: threads start on demand.
_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tango-roles")

# Keys with a meaning to ophyd_tango; any other key is kept in `Roles.values` for other tools.
ROLE_KEYS = {
    "kind": "motor | detector | camera | counter | controller | device",
    "readback": "attribute a reading reports (hinted unless `hinted` says otherwise)",
    "setpoint": "attribute set() writes; makes the device movable",
    "setpoint_readback": "attribute holding the target of the current move",
    "moving_state": "State(s) while a move runs (default MOVING)",
    "tolerance": "how close the readback must get to the target (number or attribute)",
    "velocity": "attribute used to derive a move's timeout (default: `velocity` if present)",
    "acceleration": "attribute used to derive a move's timeout (default: `acceleration`)",
    "move_timeout": "fixed move timeout in seconds",
    "progress": "attribute 0..1 with the progress of the current move",
    "stop": "command that stops a move or an acquisition",
    "abort": "command that aborts an acquisition now",
    "hinted": "attributes shown in live tables and plots",
    "read": "more attributes in every reading",
    "configuration": "attributes in read_configuration()",
    "omit": "attributes never read (even if a convention would)",
    "trigger": "command starting one acquisition (trigger())",
    "busy_state": "State(s) while an acquisition runs (trigger done when it is left)",
    "prepare": "command run at stage() before an acquisition (Lima prepareAcq)",
    "start": "command arming the acquisition at stage() (Lima startAcq)",
    "acq_status": "attribute with the acquisition status (Lima acq_status)",
    "ready_value": "acq_status value when idle",
    "fault_value": "acq_status value on failure",
    "nb_frames": "attribute with the number of frames",
    "exposure": "attribute with the exposure / integration time",
    "trigger_mode": "attribute selecting the trigger mode",
    "step_trigger_mode": "trigger_mode value for step scans",
    "fly_trigger_mode": "trigger_mode value for fly scans",
    "frame_counter": "attribute with the index of the last frame saved (-1: none)",
    "file_event": "JSON attribute announcing files: path, hinted_location, done",
    "saving": "saving settings (saved at stage, restored at unstage)",
    "image": "attribute with the latest image (a preview; frames go to files)",
    # A position-synchronised output (PSO) controller, for PsoFlyer:
    "pulse_counter": "attribute counting the PSO pulses fired since the last arm",
    "capture_count": "attribute counting the positions captured since the last arm",
    "capture": "capture attributes: pulse times, and positions with `*` for the axis name",
    "task_state": "attribute with the controller program's state (Idle, Running, Complete, Error)",
    "task_message": "attribute with the controller program's last error",
    "pso_armed": "attribute true while PSO is armed",
    "pso_axis": "attribute selecting the axis PSO follows",
    "pso_distance": "attribute with the distance between two pulses",
    "pso_window_low": "attribute with the low edge of the window where pulses fire",
    "pso_window_high": "attribute with the high edge of the window where pulses fire",
    "pso_arm": "command arming PSO",
    "pso_disarm": "command disarming PSO",
    "run_program": "command running a controller program (its text as argument)",
    "abort_program": "command aborting the running controller program",
}
LIST_KEYS = {
    "moving_state", "busy_state", "hinted", "read", "configuration", "omit", "saving",
}  # fmt: skip


@dataclass
class Roles:
    """The parsed roles of one device: `values[key]` is a str, or a list for LIST_KEYS."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key -> "convention" | "server" | "user"

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def names(self, key: str) -> list[str]:
        value = self.values.get(key)
        if value is None:
            return []
        return list(value) if isinstance(value, list | tuple) else [value]

    def states(self, key: str) -> set[tango.DevState]:
        """The Tango states a LIST_KEYS role names (moving_state, busy_state)."""
        return {_tango_state(name) for name in self.names(key)}

    def __contains__(self, key: str) -> bool:
        return key in self.values

    @property
    def kind(self) -> str:
        return self.values.get("kind", "device")

    @property
    def movable(self) -> bool:
        return "setpoint" in self.values

    @property
    def triggered(self) -> bool:
        return "trigger" in self.values

    @property
    def writes_files(self) -> bool:
        return "frame_counter" in self.values and ("file_event" in self.values or "saving" in self.values)

    def merged(self, other: Roles) -> Roles:
        return Roles({**self.values, **other.values}, {**self.sources, **other.sources})


def _tango_state(name: str) -> tango.DevState:
    try:
        return tango.DevState.names[name.strip().upper()]
    except KeyError:
        raise ValueError(f"{name!r} is not a Tango state; states: {', '.join(tango.DevState.names)}") from None


def parse_roles(declared: Iterable[str] | Mapping[str, Any] | None, source: str) -> Roles:
    """`["readback=position", "hinted=a,b"]` or `{"readback": "position"}` -> Roles."""
    if not declared:
        return Roles()
    items: Iterable[tuple[str, Any]]
    if isinstance(declared, Mapping):
        items = declared.items()
    else:
        pairs = []
        for entry in declared:
            if "=" not in entry:
                raise ValueError(f"bluesky role {entry!r} is not key=value")
            key, _, value = entry.partition("=")
            pairs.append((key, value))
        items = pairs
    values: dict[str, Any] = {}
    for raw_key, value in items:
        key = raw_key.strip()
        if key in LIST_KEYS:
            listed = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            values[key] = list(listed)
        else:
            values[key] = value.strip() if isinstance(value, str) else value
    return Roles(values, dict.fromkeys(values, source))


def _present(names: Iterable[str], available: Mapping[str, AttributeType]) -> list[str]:
    """The names that exist (case-insensitively), spelled as the server spells them."""
    lower = {name.lower(): atype.name for name, atype in available.items()}
    return [lower[n.lower()] for n in names if n.lower() in lower]


def conventional_roles(dev_class: str, attributes: Mapping[str, AttributeType], commands: Mapping[str, Any]) -> Roles:
    """Roles from well-known device conventions, for servers that declare none."""
    attr = {name.lower(): atype.name for name, atype in attributes.items()}
    cmd = {name.lower(): name for name in commands}

    def has(*names: str) -> bool:
        return all(n.lower() in attr for n in names)

    values: dict[str, Any] = {}
    if dev_class == "Motor" or (has("position") and "position" in attr and dev_class.endswith("Motor")):
        values = _motor(
            attr["position"], _present(["Velocity", "Acceleration", "Deceleration", "Offset"], attributes), cmd
        )
    elif dev_class.endswith("ExpChannel") or (has("value", "integrationtime") and "start" in cmd):
        value = attr.get("value")
        values = {"kind": "counter" if dev_class != "TwoDExpChannel" else "detector"}
        if value and attributes[value.lower()].is_scalar:
            values.update(readback=value, hinted=[value])
        if "start" in cmd:
            values.update(trigger=cmd["start"], busy_state=["MOVING"])
        if has("integrationtime"):
            values.update(exposure=attr["integrationtime"], configuration=[attr["integrationtime"]])
        if "stop" in cmd:
            values["stop"] = cmd["stop"]
    elif dev_class == "PseudoCounter" and "value" in attr:
        values = {"kind": "counter", "readback": attr["value"], "hinted": [attr["value"]]}
    elif dev_class == "LimaCCDs" or ({"prepareacq", "startacq"} <= set(cmd) and has("acq_status")):
        values = {
            "kind": "detector",
            "prepare": cmd["prepareacq"],
            "trigger": cmd["startacq"],
            "acq_status": attr["acq_status"],
            "ready_value": "Ready",
            "fault_value": "Fault",
            "step_trigger_mode": "INTERNAL_TRIGGER_MULTI",
            "fly_trigger_mode": "EXTERNAL_GATE",
        }
        for key, name in (
            ("stop", "stopacq"),
            ("abort", "abortacq"),
        ):
            if name in cmd:
                values[key] = cmd[name]
        for key, name in (
            ("nb_frames", "acq_nb_frames"),
            ("exposure", "acq_expo_time"),
            ("trigger_mode", "acq_trigger_mode"),
            ("frame_counter", "last_image_saved"),
            ("image", "last_image"),
        ):
            if name in attr:
                values[key] = attr[name]
        saving = _present(
            ["saving_directory", "saving_prefix", "saving_suffix", "saving_next_number", "saving_format",
             "saving_mode", "saving_frame_per_file"],
            attributes,
        )  # fmt: skip
        if saving:
            values["saving"] = saving
        values["configuration"] = _present(["acq_expo_time", "acq_nb_frames", "acq_trigger_mode"], attributes)
    elif "position" in attr and attributes["position"].is_writable and attributes["position"].is_scalar:
        values = _motor(attr["position"], _present(["velocity", "acceleration"], attributes), cmd)
    return Roles(values, dict.fromkeys(values, "convention"))


def _motor(position: str, configuration: list[str], commands: Mapping[str, str]) -> dict[str, Any]:
    """The roles of a motor moved by writing `position` (`commands`: lower-case name -> name)."""
    values: dict[str, Any] = {
        "kind": "motor",
        "readback": position,
        "setpoint": position,
        "moving_state": ["MOVING"],
        "hinted": [position],
        "configuration": configuration,
    }
    if "stop" in commands:
        values["stop"] = commands["stop"]
    return values


def choose_roles(
    dev_class: str,
    attributes: Mapping[str, AttributeType],
    commands: Mapping[str, Any],
    declared: Iterable[str] | None,
    user: Mapping[str, Any] | Iterable[str] | None,
) -> Roles:
    """Conventions, then the server's declaration, then the user's overrides (key by key)."""
    roles = conventional_roles(dev_class, attributes, commands)
    server = parse_roles(declared, "server")
    if server.values:
        # A server that declares roles describes its device fully: conventions only fill gaps
        # that concern a different protocol (e.g. a declared detector is no convention motor).
        if "kind" in server.values and server.values["kind"] != roles.values.get("kind"):
            roles = Roles()
        roles = roles.merged(server)
    return roles.merged(parse_roles(user, "user"))


# Signal kinds are ophyd's `Kind` names, "hinted", "normal" (both read()), "config"
# (read_configuration()) and "omitted": ophyd_tango's device maps them onto `Kind`, the Redis
# bridge writes them into BEC's device info.
# The largest spectrum (declared elements) read with its device by default; images never are.
SMALL_SPECTRUM = 4096
_READ_SET_KEYS = ("readback", "hinted", "read", "configuration")


def declares_read_set(roles: Roles) -> bool:
    """Whether the roles name what the device reads; if not, the default read set applies."""
    return any(key in roles for key in _READ_SET_KEYS)


def default_kind(atype: AttributeType) -> str:
    """The kind of an attribute's signal on a device that declares no read set: read-only scalars
    and small spectra are read, writable ones are configuration, images, larger spectra, encoded
    attributes, State and Status are left out."""
    if atype.name.lower() in ("state", "status") or atype.kind == "encoded" or atype.is_image:
        return "omitted"
    if atype.is_spectrum and atype.max_dim_x > SMALL_SPECTRUM:
        return "omitted"
    return "config" if atype.is_writable else "normal"


def signal_kinds(types: Mapping[str, AttributeType], roles: Roles, unreadable: Iterable[str] = ()) -> dict[str, str]:
    """Kind (an ophyd `Kind` name) of every attribute's signal, by the server's spelling: from the roles,
    or the default read set without them (less the `unreadable` attributes, which failed at
    connection)."""
    spelled = {name.lower(): atype.name for name, atype in types.items()}

    def names(key: str) -> list[str]:
        return [spelled[n.lower()] for n in roles.names(key) if n.lower() in spelled]

    kinds = dict.fromkeys((atype.name for atype in types.values()), "omitted")
    if not declares_read_set(roles):
        kinds.update((atype.name, default_kind(atype)) for atype in types.values())
        kinds.update(dict.fromkeys(unreadable, "omitted"))
    for name in names("configuration"):
        kinds[name] = "config"
    for name in names("read") + names("frame_counter"):
        kinds[name] = "normal"
    for name in names("readback"):
        kinds[name] = "normal" if "hinted" in roles else "hinted"
    for name in names("hinted"):
        kinds[name] = "hinted"
    for name in names("omit"):
        kinds[name] = "omitted"
    return kinds


def declared_roles(proxy: tango.DeviceProxy, dev_class: str) -> list[str]:
    """The `bluesky_roles` a device declares: its device property, else its class property, else
    the class property's declared default (what ophyd_tango's `DeviceLink.connect` finds)."""
    return first_declared(
        {key: future.result() for key, future in role_lookups(proxy, dev_class, False, _lookups).items()}
    )


def first_declared(results: dict[str, Any]) -> list[str]:
    """The roles of the first source that declares any: device property, class property, default."""
    return results.get("device") or results.get("class") or results.get("admin") or []


def role_lookups(proxy: tango.DeviceProxy, dev_class: str, need_alias: bool, pool: Executor) -> dict[str, Future]:
    """Start the `bluesky_roles` look-ups (device property, class property, and the class
    property's declared default from the admin device, for servers that never store it) and the
    alias look-up, all at once in `pool`; each future yields None when there is nothing."""
    try:
        db = proxy.get_device_db()
    except tango.DevFailed:
        db = None
    lookups = {"admin": pool.submit(_class_property_default, proxy, dev_class)}
    if db is not None:
        lookups["device"] = pool.submit(_quietly, lambda: list(proxy.get_property(["bluesky_roles"])["bluesky_roles"]))
        lookups["class"] = pool.submit(
            _quietly, lambda: list(db.get_class_property(dev_class, ["bluesky_roles"])["bluesky_roles"])
        )
        if need_alias:
            lookups["alias"] = pool.submit(_quietly, lambda: proxy.alias() or None)
    return lookups


def _quietly(call: Any) -> Any:
    try:
        return call()
    except tango.DevFailed:
        return None


def _class_property_default(proxy: tango.DeviceProxy, dev_class: str) -> list[str]:
    """The declared default of class property `bluesky_roles`, from the admin device."""
    try:
        admin = tango.DeviceProxy(proxy.adm_name())
        admin.set_timeout_millis(proxy.get_timeout_millis())
        triples = admin.command_inout("QueryWizardClassProperty", dev_class)
    except tango.DevFailed:
        return []
    for i in range(0, len(triples) - 2, 3):
        if triples[i] == "bluesky_roles":
            default = triples[i + 2]
            return [line for line in default.splitlines() if line.strip()]
    return []
