"""PVI: the structure listing a device's PVs, so ophyd-async builds the device from one PV.

ophyd-async's `PviDeviceConnector(prefix)` reads `{prefix}PVI` and takes its `value` field: one
sub-structure per child, whose string fields name the PVs by access mode: `r` (read), `w`
(write), `rw` (one PV both ways) or `x` (a command, run by putting 1). This module builds that
structure the way FastCS's p4p transport serves it (fastcs/transports/epics/pva/pvi.py): an
unnamed structure with `alarm`, `timeStamp`, `display.description` and `value`, which is the
form pvi's own QSRV templates (pvi/_format/pvi.template.jinja) give a group PV.

A Tango attribute's entry is its Tango access (READ -> r, WRITE -> w, else rw) on the one PV the
bridge serves for it; a command without input is an `x` entry on a boolean NTScalar PV whose put
runs the command (FastCS's command PV, `make_command_pv`). The bridge's put allowlist decides at
put time, as for every other PV.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from p4p import Type, Value
from p4p.nt import NTScalar
from p4p.nt.common import alarm, timeStamp
from tango import AttrWriteType, CmdArgType, CommandInfo

from ophyd_tango.core.quality import Severity
from ophyd_tango.core.types import AttributeType

from .mapping import AlarmStatus, _stamp

__all__ = ["COMMAND_TYPE", "PVI_SUFFIX", "attribute_access", "command_value", "exported_commands", "pvi_value"]

PVI_SUFFIX = "PVI"
# The commands that are Tango attributes too: the bridge serves them as attributes.
_ATTRIBUTE_COMMANDS = frozenset({"state", "status"})
COMMAND_TYPE = NTScalar.buildType("?", display=True)


def attribute_access(attr: AttributeType) -> str:
    """The PVI access mode of a Tango attribute: r, w or rw."""
    if attr.writable == AttrWriteType.READ:
        return "r"
    if attr.writable == AttrWriteType.WRITE:
        return "w"
    return "rw"


def exported_commands(commands: list[CommandInfo]) -> list[CommandInfo]:
    """The commands PVI can carry: no input (an `x` entry is a put of 1), not State or Status."""
    return [c for c in commands if c.in_type == CmdArgType.DevVoid and c.cmd_name.lower() not in _ATTRIBUTE_COMMANDS]


def command_value(description: str, running: bool = False, failure: str = "") -> Value:
    """A command PV's Value: True while the command runs; a MAJOR alarm says why it last failed."""
    severity, status = (Severity.MAJOR, AlarmStatus.RECORD) if failure else (Severity.NO_ALARM, AlarmStatus.NO_STATUS)
    return Value(
        COMMAND_TYPE,
        {
            "value": running,
            "display": {"description": description},
            "alarm": {"severity": int(severity), "status": int(status), "message": failure},
            "timeStamp": _stamp(time.time()),
        },
    )


def pvi_value(description: str, entries: Mapping[str, Mapping[str, str]]) -> Value:
    """The PVI structure of one device: `entries` maps a child name to {access mode: PV name}."""
    fields = [(name, ("S", "structure", [(access, "s") for access in modes])) for name, modes in entries.items()]
    pvi_type = Type(
        [
            ("alarm", alarm),
            ("timeStamp", timeStamp),
            ("display", ("S", None, [("description", "s")])),
            ("value", ("S", "structure", fields)),
        ]
    )
    content: dict[str, Any] = {
        "display": {"description": description},
        "timeStamp": _stamp(time.time()),
        "value": {name: dict(modes) for name, modes in entries.items()},
    }
    return Value(pvi_type, content)
