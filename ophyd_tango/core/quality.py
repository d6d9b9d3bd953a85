"""Tango attribute quality -> EPICS alarm severity, the one mapping the bridges and clients share."""

from __future__ import annotations

from enum import IntEnum

from tango import AttrQuality

__all__ = ["Severity", "severity_of_quality"]


class Severity(IntEnum):
    """EPICS alarm severity (the `alarm.severity` of the normative types)."""

    NO_ALARM = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3


_BY_QUALITY = {
    AttrQuality.ATTR_VALID: Severity.NO_ALARM,
    AttrQuality.ATTR_CHANGING: Severity.NO_ALARM,
    AttrQuality.ATTR_WARNING: Severity.MINOR,
    AttrQuality.ATTR_ALARM: Severity.MAJOR,
    AttrQuality.ATTR_INVALID: Severity.INVALID,
}
_BY_NAME = {quality.name: severity for quality, severity in _BY_QUALITY.items()}


def severity_of_quality(quality: AttrQuality | str) -> Severity:
    """The severity of a quality (an AttrQuality or its name, 'ATTR_WARNING'); unknown is INVALID."""
    if isinstance(quality, str):
        return _BY_NAME.get(quality, Severity.INVALID)
    return _BY_QUALITY.get(quality, Severity.INVALID)
