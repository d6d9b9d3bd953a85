"""A refused request reaches the client as a DevFailed: a reason code and a sentence to act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import tango

__all__ = ["refusals", "refuse"]


def refuse(reason: str, text: str, origin: str) -> NoReturn:
    """Raise the DevFailed a client sees: `reason` names the kind of refusal, `text` says why."""
    tango.Except.throw_exception(reason, text, origin)
    raise AssertionError("unreachable")  # throw_exception always raises


@contextlib.contextmanager
def refusals(origin: str, *kinds: type[Exception], reason: str = "Refused") -> Iterator[None]:
    """Turn the listed exceptions into DevFailed: the exception's own `reason` if it has one,
    else `reason`, and its message as the description."""
    try:
        yield
    except kinds as exc:
        refuse(getattr(exc, "reason", "") or reason, str(exc), origin)
