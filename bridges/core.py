"""What both bridges share: finding devices, choosing attributes, following them, counting.

`BridgeCore` lists the devices matching the device globs in the Tango database (running or not,
less the excluded ones and the bridge's own device), learns their attributes from the shared
engine, keeps those passing the attribute filters and hands them to a `BridgeSink` (the PVA or
the Redis side), which turns every update and configuration change into its own protocol.
Devices not reachable yet are retried every `retry_period`; every `rescan_period` the database is
listed again and followed devices are checked for new attributes in the engine's types (which
the engine keeps up to date from configuration events and after restarts: no Tango call). An
explicit `rescan()` also has the engine query the followed devices' configurations again, for
servers that replace attributes without a configuration event (dynamic attributes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import tango

from ophyd_tango.core.discovery import attribute_matches, database, defined_devices
from ophyd_tango.core.errors import error_text
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, Subscription, TangoSubscriber
from ophyd_tango.core.types import AttributeType

__all__ = ["BridgeCore", "BridgeSink", "RateMeter", "Selection"]

logger = logging.getLogger(__name__)


class BridgeSink(Protocol):
    """One bridge's protocol side: what it does with the attributes the core follows."""

    def add_attributes(self, device: str, types: list[AttributeType]) -> list[str]:
        """Prepare newly found attributes of `device`; return the names to follow."""
        ...

    def on_update(self, update: AttributeUpdate) -> None:
        """A value or error of a followed attribute (on Tango's event thread: keep it short)."""
        ...

    def on_config(self, update: ConfigUpdate) -> None:
        """A followed attribute's configuration changed."""
        ...


@dataclass(frozen=True)
class Selection:
    """Which devices and attributes a bridge follows (globs; see `attribute_matches`)."""

    devices: Sequence[str] = ("sim/*/*",)
    exclude_devices: Sequence[str] = ()
    attributes: Sequence[str] = ("*",)
    exclude_attributes: Sequence[str] = ()

    def follows(self, device: str, attribute: str) -> bool:
        return attribute_matches(self.attributes, device, attribute) and not attribute_matches(
            self.exclude_attributes, device, attribute
        )


class RateMeter:
    """Events per second over the last `window` seconds, in one-second buckets."""

    def __init__(self, window: int = 5):
        self._window = window
        self._buckets: deque[list[int]] = deque(maxlen=window + 1)  # [second, count]
        self._lock = threading.Lock()

    def tick(self, count: int = 1) -> None:
        second = int(time.monotonic())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += count
            else:
                self._buckets.append([second, count])

    def rate(self) -> float:
        now = int(time.monotonic())
        with self._lock:
            complete = [count for second, count in self._buckets if now - self._window <= second < now]
        return sum(complete) / self._window


class BridgeCore:
    """Follows the selected Tango attributes for one sink until `stop()`.

    `own_device`: the bridge's own Tango device, never followed. `list_devices()`: the candidate
    devices (default: the Tango database's, by `selection`). Counters and state are for the
    bridge's status attributes.
    """

    def __init__(
        self,
        sink: BridgeSink,
        subscriber: TangoSubscriber,
        selection: Selection,
        *,
        own_device: str | None = None,
        list_devices: Callable[[], list[str]] | None = None,
        retry_period: float = 2.0,
        rescan_period: float = 10.0,
        name: str = "bridge",
    ):
        self.sink = sink
        self.subscriber = subscriber
        self.selection = selection
        self._exclude = [*selection.exclude_devices, *([own_device.lower()] if own_device else [])]
        self._list_devices = list_devices or self._database_devices
        self._database: tango.Database | None = None
        self._retry_period = retry_period
        self._rescan_period = rescan_period
        self._subscriptions: dict[str, list[Subscription]] = {}  # device -> its subscriptions
        self._seen: dict[str, set[str]] = {}  # device -> lower-case names offered to the sink
        self._followed: dict[str, set[str]] = {}  # device -> lower-case names of its followed attributes
        self._waiting: dict[str, str] = {}  # device -> why it is not followed yet
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._refresh = threading.Event()  # an explicit rescan: query configurations again
        self._stopped = threading.Event()
        self._first_scan = threading.Event()
        self._thread = threading.Thread(target=self._discover_forever, name=f"{name}-discovery", daemon=True)
        self._rate = RateMeter()
        self.update_count = 0
        self.error_count = 0
        self.last_error = ""

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> BridgeCore:
        self._thread.start()
        return self

    def wait_first_scan(self, timeout: float) -> bool:
        """True once every matching device has been tried once."""
        return self._first_scan.wait(timeout)

    def rescan(self) -> None:
        """Look for new devices and attributes (and retry unreachable devices) now."""
        self._refresh.set()
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.subscriber.timeout + 2)
        with self._lock:
            subscriptions = [sub for subs in self._subscriptions.values() for sub in subs]
            self._subscriptions = {}
        for subscription in subscriptions:
            subscription.close()

    # ---- state -----------------------------------------------------------------------------------
    @property
    def followed_devices(self) -> list[str]:
        with self._lock:
            return sorted(self._subscriptions)

    @property
    def waiting_devices(self) -> dict[str, str]:
        """Matching devices not followed yet -> why."""
        with self._lock:
            return dict(self._waiting)

    @property
    def attribute_count(self) -> int:
        with self._lock:
            return sum(len(names) for names in self._followed.values())

    @property
    def update_rate(self) -> float:
        """Updates per second over the last few seconds."""
        return self._rate.rate()

    def record_error(self, message: str) -> None:
        self.error_count += 1
        self.last_error = message
        logger.warning("%s", message)

    # ---- discovery -------------------------------------------------------------------------------
    def _database_devices(self) -> list[str]:
        if self._database is None:
            self._database = database(timeout=self.subscriber.timeout)
        return defined_devices(self._database, self.selection.devices, self._exclude)

    def _discover_forever(self) -> None:
        next_scan = 0.0
        candidates: list[str] = []
        while not self._stopped.is_set():
            now = time.monotonic()
            rescan = now >= next_scan or not candidates
            refresh = self._refresh.is_set()
            self._refresh.clear()
            if rescan:
                candidates = self._candidates(candidates)
                next_scan = now + self._rescan_period
            for device in candidates:
                if self._stopped.is_set():
                    return
                if rescan or device not in self._subscriptions:  # followed devices: new attributes
                    try:
                        self._sync_device(device, refresh=refresh)
                    except Exception as exc:  # keep discovering the other devices
                        logger.exception("following %s failed", device)
                        self.record_error(f"following {device} failed: {exc}")
            self._first_scan.set()
            with self._lock:
                waiting = bool(self._waiting)
            self._wake.wait(self._retry_period if waiting else self._rescan_period)
            if self._wake.is_set():
                self._wake.clear()
                next_scan = 0.0

    def _candidates(self, known: list[str]) -> list[str]:
        """The matching devices now (`known` when the database does not answer)."""
        try:
            return self._list_devices()
        except tango.DevFailed as exc:
            self.record_error(f"cannot list devices in the Tango database: {error_text(exc)}")
            return known

    def _sync_device(self, device: str, *, refresh: bool = False) -> None:
        """Follow the selected attributes of `device` not followed yet (`refresh`: the engine
        queries the configurations again, and reports changes as configuration updates)."""
        try:
            types = self.subscriber.attribute_types(device, refresh=refresh and device in self._subscriptions)
        except tango.DevFailed as exc:
            if device not in self._subscriptions:  # a followed device's outage is the engine's to report
                with self._lock:
                    self._waiting[device] = error_text(exc)
            return
        seen = self._seen.setdefault(device, set())
        new = [t for name, t in types.items() if name not in seen and self.selection.follows(device, t.name)]
        seen.update(t.name.lower() for t in new)  # offered to the sink once, taken or not
        names = self.sink.add_attributes(device, new) if new else []
        with self._lock:
            self._waiting.pop(device, None)
            self._followed.setdefault(device, set()).update(name.lower() for name in names)
            self._subscriptions.setdefault(device, [])
        if not names:
            return
        subscription = self.subscriber.subscribe(device, names, self._on_update, on_config=self.sink.on_config)
        with self._lock:
            self._subscriptions[device].append(subscription)
        logger.info("following %d attributes of %s", len(names), device)

    def _on_update(self, update: AttributeUpdate) -> None:
        self.update_count += 1
        self._rate.tick()
        try:
            self.sink.on_update(update)
        except Exception:
            logger.exception("update of %s/%s not handled", update.device, update.attribute)
