"""The connection to one Tango device: its proxy, its structure and batched, timed I/O.

Everything a `TangoDevice` and its signals do on the wire goes through `DeviceLink`: one
`DeviceProxy` per device (shared with the subscription engine), the attribute configuration
fetched once in bulk, and one `read_attributes` round trip per `Device.read()`.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import tango

from ._deadline import ANSWER_MARGIN, UNANSWERED_LIMIT, UNANSWERED_SPAN, call_within
from .core._private import raw_read_attributes
from .core.discovery import unknown_device_error
from .core.errors import TangoDeviceError, TangoTimeoutError, error_text, is_reconnect_delayed, translate
from .core.names import device_key
from .core.roles import first_declared, role_lookups
from .core.subscription import TangoSubscriber, write_attribute
from .core.types import AttributeType

__all__ = [
    "AttributeValue",
    "DeviceLink",
    "TangoDeviceError",
    "TangoTimeoutError",
    "shared_subscriber",
]

_subscribers: dict[float, TangoSubscriber] = {}
# Connection look-ups are independent round trips: run them side by side.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ophyd_tango-connect")
_subscribers_lock = threading.Lock()


def _close_shared() -> None:
    """Stop the engines' threads before the interpreter (and omniORB) goes away."""
    with _subscribers_lock:
        subscribers = list(_subscribers.values())
        _subscribers.clear()
    for subscriber in subscribers:
        subscriber.close()


atexit.register(_close_shared)


def shared_subscriber(timeout: float) -> TangoSubscriber:
    """The process-wide subscription engine for this timeout (one DeviceProxy per device)."""
    with _subscribers_lock:
        subscriber = _subscribers.get(timeout)
        if subscriber is None:
            subscriber = _subscribers[timeout] = TangoSubscriber(timeout=timeout)
        return subscriber


@dataclass(frozen=True)
class AttributeValue:
    """One attribute read: engine value (see AttributeUpdate), quality and Tango timestamp."""

    value: Any
    quality: tango.AttrQuality
    timestamp: float


class DeviceLink:
    """One device's proxy, structure and I/O. Built by `DeviceLink.connect`."""

    def __init__(
        self,
        trl: str,
        subscriber: TangoSubscriber,
        proxy: tango.DeviceProxy,
        types: dict[str, AttributeType],
        commands: dict[str, tango.CommandInfo],
        dev_class: str,
        declared_roles: list[str],
        alias: str | None,
    ):
        self.trl = trl
        self.key = device_key(trl)
        self.subscriber = subscriber
        self.proxy = proxy
        self.types = types  # lower-case name -> type
        self.commands = commands  # server spelling -> CommandInfo
        self.dev_class = dev_class
        self.declared_roles = declared_roles
        self.alias = alias
        self.timeout = subscriber.timeout
        self._batch = threading.local()
        self._raw_read = raw_read_attributes(proxy)
        self._latest: dict[str, AttributeValue] = {}
        self._silence: _Silence | None = None  # since the last call that went unanswered

    # ---- connection ----------------------------------------------------------------------------
    @classmethod
    def connect(cls, trl: str, *, timeout: float = 3.0, need_alias: bool = True) -> DeviceLink:
        """Ask the device (and the database, when there is one) everything in a few bulk calls,
        the independent ones concurrently."""
        subscriber = shared_subscriber(timeout)
        try:
            proxy = subscriber.proxy(trl)
            dev_class = _info(proxy, timeout).dev_class
            types_lookup = _pool.submit(subscriber.attribute_types, trl, refresh=True)
            lookups = role_lookups(proxy, dev_class, need_alias, _pool)
            commands = {info.cmd_name: info for info in proxy.command_list_query()}
            types = types_lookup.result()
        except tango.DevFailed as exc:
            if any("NotDefined" in e.reason for e in exc.args):
                match = re.match(r"^tango://([^/]+)/(.*)$", trl.split("#")[0])
                host, name = (match.group(1), match.group(2)) if match else (None, trl)
                raise unknown_device_error(name, host) from exc
            raise translate(exc, f"cannot connect to Tango device {trl}") from exc
        results = {key: future.result() for key, future in lookups.items()}
        return cls(trl, subscriber, proxy, types, commands, dev_class, first_declared(results), results.get("alias"))

    def source(self, attribute: str) -> str:
        """Full TRL of an attribute, for data keys ('tango://host:port/dev/attr')."""
        if self.trl.startswith("tango://"):
            base = self.trl.split("#")[0]
        else:
            base = f"tango://{self.proxy.get_db_host()}:{self.proxy.get_db_port()}/{self.trl}"
        return f"{base}/{attribute}"

    def attribute_type(self, attribute: str) -> AttributeType:
        return self.types[attribute.lower()]

    def spelled(self, name: str | None) -> str | None:
        """The server's spelling of attribute `name` (any case); None if absent or not named."""
        atype = self.types.get(name.lower()) if name else None
        return atype.name if atype else None

    def command_named(self, name: str | None) -> str | None:
        """The server's spelling of command `name` (any case); None if absent or not named."""
        if not name:
            return None
        return next((command for command in self.commands if command.lower() == name.lower()), None)

    # ---- reads ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self, attributes: list[str]) -> Iterator[None]:
        """Read `attributes` in one round trip; reads inside the block use those values."""
        outer = getattr(self._batch, "values", None)
        if outer is not None:
            yield
            return
        self._batch.values = self.read(attributes) if attributes else {}
        try:
            yield
        finally:
            self._batch.values = None

    def read(self, attributes: list[str]) -> dict[str, AttributeValue]:
        """One `read_attributes` call; raises TangoDeviceError naming the failing attribute."""
        replies = self._call(f"read {', '.join(attributes)}", self._raw_read, attributes)
        values = {}
        for name, reply in zip(attributes, replies, strict=True):
            if reply.has_failed:
                stack = reply.get_err_stack()
                reason = stack[0].reason if stack else ""
                raise TangoDeviceError(f"{self.key}/{name}: {error_text(stack)}", reason)
            atype = self.types.get(name.lower())
            value = atype.from_tango(reply.value) if atype else reply.value
            values[name] = self._latest[name.lower()] = AttributeValue(value, reply.quality, reply.time.totime())
        return values

    def failing(self, attributes: list[str]) -> dict[str, str]:
        """The attributes of `attributes` whose read fails now, with Tango's reason (one round trip)."""
        replies = self._call(f"read {', '.join(attributes)}", self._raw_read, attributes)
        failures = {}
        for name, reply in zip(attributes, replies, strict=True):
            if reply.has_failed:
                stack = reply.get_err_stack()
                failures[name] = stack[0].reason if stack else "no reason given"
        return failures

    def read_one(self, attribute: str) -> AttributeValue:
        cached = getattr(self._batch, "values", None)
        if cached is not None and attribute in cached:
            return cached[attribute]
        return self.read([attribute])[attribute]

    def latest(self, attribute: str) -> AttributeValue | None:
        """The last value read or received, without I/O (None if never seen)."""
        return self._latest.get(attribute.lower())

    def remember(self, attribute: str, value: AttributeValue) -> None:
        self._latest[attribute.lower()] = value

    # ---- writes and commands -------------------------------------------------------------------
    def write(self, attribute: str, value: Any) -> None:
        """Write a checked value (see AttributeType.to_tango); Tango's refusal raises with its reason."""
        self._latest.pop(attribute.lower(), None)  # the next read goes to the server: never stale
        self._call(f"write {attribute}", write_attribute, self.proxy, attribute, value)

    def command(self, name: str, argument: Any = None) -> Any:
        if argument is None:
            return self._call(f"run {name}", self.proxy.command_inout, name)
        return self._call(f"run {name}", self.proxy.command_inout, name, argument)

    def _call(self, what: str, function: Any, *args: Any) -> Any:
        """Call the proxy, waiting no longer than its timeout (and a margin; then TangoTimeoutError);
        after a server restart retry once the proxy may reconnect. Within UNANSWERED_SPAN of a call
        that went unanswered (a silent device: a cut link, a hung server), calls are bounded by
        UNANSWERED_LIMIT and never retried, and once a second call went unanswered the rest fail
        at once, so that clean-up after the failure is quick; the error says what went unanswered."""
        silence = self._silence
        if silence is not None and time.monotonic() - silence.since > UNANSWERED_SPAN:
            silence = None
        if silence is not None and silence.again:
            raise TangoTimeoutError(
                f"{self.key}: {what}: not sent, two calls in a row went unanswered (after {silence.what})",
                "API_DeviceTimedOut",
            )
        limit = self.timeout + ANSWER_MARGIN if silence is None else min(self.timeout, UNANSWERED_LIMIT)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                result = call_within(limit, f"{self.key}: {what}", function, *args)
            except TangoTimeoutError as exc:
                raise self._failed(exc, silence) from None
            except tango.DevFailed as exc:
                error = translate(exc, f"{self.key}: {what} failed")
                if silence is None and is_reconnect_delayed(exc):
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    error = TangoTimeoutError(f"{error} (for {self.timeout:g} s)", error.reason)
                raise self._failed(error, silence) from exc
            self._silence = None
            return result

    def _failed(self, error: TangoDeviceError, silence: _Silence | None) -> TangoDeviceError:
        """`error`, noted when it is a timeout, and told what went unanswered before."""
        if isinstance(error, TangoTimeoutError):
            if silence is None:
                self._silence = _Silence(time.monotonic(), str(error))
            else:
                silence.again = True
        if silence is not None:
            return type(error)(f"{error} (after {silence.what})", error.reason)
        return error


@dataclass
class _Silence:
    """A call to the device went unanswered at `since` (monotonic): `what` it was, and whether a
    second call went unanswered after it."""

    since: float
    what: str
    again: bool = False


def _info(proxy: tango.DeviceProxy, timeout: float) -> tango.DeviceInfo:
    """`proxy.info()`, waiting out (within `timeout`) the proxy's refusal to reconnect in the
    second after a failed attempt: a device whose server has just come back is not "unreachable"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proxy.info()
        except tango.DevFailed as exc:
            if not is_reconnect_delayed(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)
