"""Tango errors, once: one-line text, the reasons that mean "unreachable" or "timed out", and translation.

from ophyd_tango.core.errors import error_text, is_unreachable, translate, TangoDeviceError

try:
    proxy.write_attribute("position", 1e9)
except tango.DevFailed as exc:
    raise translate(exc, "sim/aerotech/x: write position") from exc
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tango

__all__ = [
    "TIMEOUT_REASONS",
    "UNREACHABLE_REASONS",
    "TangoDeviceError",
    "TangoTimeoutError",
    "error_description",
    "error_text",
    "first_reason",
    "is_reconnect_delayed",
    "is_timeout",
    "is_unreachable",
    "translate",
]

# Reasons that mean "the device is not there" rather than "this call failed".
UNREACHABLE_REASONS = frozenset(
    {
        "API_CantConnectToDevice",
        "API_DeviceNotExported",
        "API_CorbaException",
        "API_CommunicationFailed",
        "API_ServerNotRunning",
        "API_DeviceNotDefined",
        "API_DeviceTimedOut",
        "API_EventTimeout",
        "TRANSIENT",
    }
)
TIMEOUT_REASONS = frozenset({"API_DeviceTimedOut", "API_CommandTimedOut"})
# omniORB's minor code when a call (connecting included) outlasted its timeout: a silent peer.
CALL_TIMED_OUT = "TRANSIENT_CallTimedout"


class TangoDeviceError(RuntimeError):
    """A Tango call failed; `reason` is Tango's reason (e.g. 'API_WAttrOutsideLimit')."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class TangoTimeoutError(TangoDeviceError, TimeoutError):
    """A Tango call or a wait on a device took longer than its timeout."""


def error_text(exc: BaseException | Iterable[Any]) -> str:
    """A one-line description of a DevFailed (or an error stack), most specific reason first."""
    if isinstance(exc, BaseException) and not isinstance(exc, tango.DevFailed):
        return f"{type(exc).__name__}: {exc}"
    errors = exc.args if isinstance(exc, tango.DevFailed) else exc
    parts = []
    for err in errors:
        desc = " ".join(str(getattr(err, "desc", err)).split())
        reason = getattr(err, "reason", "")
        parts.append(f"{reason}: {desc}" if reason else desc)
    return parts[0] if parts else "unknown Tango error"


def error_description(exc: BaseException | Iterable[Any]) -> str:
    """Only the first error's description (no reason): what a server shows in its Status."""
    if isinstance(exc, BaseException) and not isinstance(exc, tango.DevFailed):
        return str(exc) or type(exc).__name__
    errors = list(exc.args if isinstance(exc, tango.DevFailed) else exc)
    return " ".join(str(getattr(errors[0], "desc", errors[0])).split()) if errors else "unknown Tango error"


def first_reason(exc: tango.DevFailed) -> str:
    """Tango's reason of the first (most specific) error, or ''."""
    return exc.args[0].reason if exc.args else ""


def is_unreachable(error: tango.DevFailed | str | None) -> bool:
    """Whether a DevFailed (or an error text from `error_text`) means the device is not there."""
    if error is None:
        return False
    if isinstance(error, str):
        return any(reason in error for reason in UNREACHABLE_REASONS)
    return any(e.reason in UNREACHABLE_REASONS for e in error.args)


def is_reconnect_delayed(exc: tango.DevFailed) -> bool:
    """Whether a proxy refused to reconnect because it tried less than a second ago (cppTango's
    Connection::reconnect: "The connection request was delayed"): worth asking again shortly."""
    return is_unreachable(exc) and "delayed" in str(exc)


def is_timeout(exc: tango.DevFailed) -> bool:
    """Whether a DevFailed means no answer came within the timeout (Tango's or omniORB's)."""
    return any(e.reason in TIMEOUT_REASONS or CALL_TIMED_OUT in str(e.desc) for e in exc.args)


def translate(exc: tango.DevFailed, context: str) -> TangoDeviceError:
    """`context: <most specific error>` as a TangoDeviceError (TangoTimeoutError for timeouts)."""
    reasons = [e.reason for e in exc.args]
    message = f"{context}: {error_text(exc)}"
    if is_timeout(exc):
        return TangoTimeoutError(message, reasons[0])
    return TangoDeviceError(message, reasons[0] if reasons else "")
