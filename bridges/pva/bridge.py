"""The bridge itself: Tango attributes followed by the shared engine, republished as p4p SharedPVs.

`TangoPvaBridge` has no Tango server code (the `PvaBridge` device in `device.py` wraps it), so
tests and benchmarks can also run it inside a plain process.

Devices matching the configured globs are found in the Tango database; each one reachable is
exported once (one PV per matching attribute, opened INVALID until Tango's first value), then
followed by `ophyd_tango.core.subscription.TangoSubscriber`, whose callbacks post straight to the PVs.
Devices not reachable yet are retried every `retry_period`; every `rescan_period` (or on
`rescan()`) the database is scanned again for new devices and exported devices are checked for
new attributes and configuration changes. Puts run on a small pool of worker threads so one slow
Tango write does not hold up the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import tango
from p4p.server import Server, StaticProvider
from p4p.server.thread import SharedPV
from p4p.util import ThreadedWorkQueue

from ophyd_tango.core.errors import error_text
from ophyd_tango.core.subscription import AttributeUpdate, Subscription, TangoSubscriber

from .config import BridgeConfig
from .mapping import AttributeMapping, attribute_mapping

__all__ = ["ExportedPv", "TangoPvaBridge"]

logger = logging.getLogger(__name__)


@dataclass
class ExportedPv:
    """One published PV and the Tango attribute behind it."""

    name: str
    mapping: AttributeMapping
    writable: bool  # allowed by put_allowlist (Tango's own writability is checked at put time)
    shared: SharedPV = field(repr=False)
    error: str | None = "waiting for the first value"  # None while Tango delivers good values

    @property
    def in_error(self) -> bool:
        return self.error is not None

    @property
    def device(self) -> str:
        return self.mapping.device

    @property
    def attribute(self) -> str:
        return self.mapping.attribute


class RateMeter:
    """Events per second over the last `window` seconds, in one-second buckets."""

    def __init__(self, window: int = 5):
        self._window = window
        self._buckets: deque[list[int]] = deque(maxlen=window + 1)  # [second, count]
        self._lock = threading.Lock()

    def tick(self) -> None:
        second = int(time.monotonic())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += 1
            else:
                self._buckets.append([second, 1])

    def rate(self) -> float:
        now = int(time.monotonic())
        with self._lock:
            complete = [count for second, count in self._buckets if now - self._window <= second < now]
        return sum(complete) / self._window


class AgeTracker:
    """How old Tango's values are when posted (post time - Tango timestamp), last `size` updates."""

    def __init__(self, size: int = 2000):
        self._ages: deque[float] = deque(maxlen=size)

    def add(self, timestamp: float) -> None:
        if timestamp:
            self._ages.append(time.time() - timestamp)

    def percentile(self, q: float) -> float:
        ages = sorted(self._ages)
        if not ages:
            return 0.0
        return ages[min(len(ages) - 1, int(q / 100 * len(ages)))]


class _PutHandler:
    """p4p handler of one PV: runs the bridge's put on the put worker pool."""

    def __init__(self, bridge: TangoPvaBridge, pv_name: str):
        self._bridge = bridge
        self._pv_name = pv_name

    def put(self, shared: SharedPV, op: Any) -> None:
        self._bridge._put(self._pv_name, op)


class TangoPvaBridge:
    """Republishes the configured Tango attributes as PVAccess PVs until `stop()`.

    `exclude_devices`: device names never exported (the bridge's own device). Counters
    (`update_count`, `error_count`, `put_count`) and `last_error` are for the status attributes.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        subscriber: TangoSubscriber | None = None,
        database: tango.Database | None = None,
        exclude_devices: tuple[str, ...] = (),
        retry_period: float = 2.0,
        rescan_period: float = 10.0,
        put_workers: int = 4,
    ):
        self.config = config
        self._own_subscriber = subscriber is None
        self._subscriber = subscriber or TangoSubscriber()
        self._database = database
        self._exclude = {d.lower() for d in exclude_devices}
        self._retry_period = retry_period
        self._rescan_period = rescan_period
        self._provider = StaticProvider("tango-pva-bridge")
        self._puts = ThreadedWorkQueue(name="pva-bridge-put", workers=put_workers, daemon=True, maxsize=256)
        self._server: Server | None = None
        self._pvs: dict[str, ExportedPv] = {}  # PV name -> PV
        self._by_attribute: dict[tuple[str, str], ExportedPv] = {}  # (device, attribute lower) -> PV
        self._subscriptions: dict[str, list[Subscription]] = {}  # device -> its subscriptions
        self._waiting: dict[str, str] = {}  # device -> why it is not exported yet
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._first_scan = threading.Event()
        self._thread = threading.Thread(target=self._discover_forever, name="pva-bridge-discovery", daemon=True)
        self._rate = RateMeter()
        self.ages = AgeTracker()
        self.update_count = 0
        self.error_count = 0
        self.put_count = 0
        self.last_error = ""

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TangoPvaBridge:
        """Start serving on the configured ports (raises when they cannot be bound) and start
        discovering devices in the background."""
        self._puts.start()
        self._server = Server(providers=[self._provider], conf=self.config.server_conf(), useenv=False)
        conf = self._server.conf()
        logger.info(
            "PVA bridge serving on %s tcp %s udp %s",
            conf["EPICS_PVAS_INTF_ADDR_LIST"],
            conf["EPICS_PVAS_SERVER_PORT"],
            conf["EPICS_PVAS_BROADCAST_PORT"],
        )
        self._thread.start()
        return self

    def wait_first_scan(self, timeout: float) -> bool:
        """True once every matching device has been tried once."""
        return self._first_scan.wait(timeout)

    def rescan(self) -> None:
        """Look for new devices (and retry unreachable ones) now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self._subscriber.timeout + 2)
        with self._lock:
            subscriptions = [sub for subs in self._subscriptions.values() for sub in subs]
            self._subscriptions = {}
        for subscription in subscriptions:
            subscription.close()
        if self._own_subscriber:
            self._subscriber.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        for pv in list(self._pvs.values()):
            pv.shared.close()
        self._puts.stop()

    def __enter__(self) -> TangoPvaBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- status --------------------------------------------------------------------------------
    @property
    def server_conf(self) -> dict[str, str]:
        """The p4p server's effective configuration (actual ports)."""
        return self._server.conf() if self._server else {}

    @property
    def server_port(self) -> int:
        return int(self.server_conf.get("EPICS_PVAS_SERVER_PORT", 0))

    @property
    def broadcast_port(self) -> int:
        return int(self.server_conf.get("EPICS_PVAS_BROADCAST_PORT", 0))

    @property
    def pv_names(self) -> list[str]:
        with self._lock:
            return sorted(self._pvs)

    @property
    def pv_count(self) -> int:
        return len(self._pvs)

    @property
    def disconnected_pv_count(self) -> int:
        with self._lock:
            return sum(1 for pv in self._pvs.values() if pv.in_error)

    @property
    def waiting_devices(self) -> dict[str, str]:
        """Matching devices not exported yet -> why."""
        with self._lock:
            return dict(self._waiting)

    @property
    def exported_devices(self) -> list[str]:
        with self._lock:
            return sorted(self._subscriptions)

    @property
    def update_rate(self) -> float:
        """PV updates per second over the last few seconds."""
        return self._rate.rate()

    def pv(self, name: str) -> ExportedPv:
        return self._pvs[name]

    # ---- discovery -----------------------------------------------------------------------------
    def _discover_forever(self) -> None:
        next_scan = 0.0
        candidates: list[str] = []
        while not self._stopped.is_set():
            now = time.monotonic()
            rescan = now >= next_scan or not candidates
            if rescan:
                candidates = self._matching_devices(candidates)
                next_scan = now + self._rescan_period
            for device in candidates:
                if self._stopped.is_set():
                    return
                # new devices at every pass; exported ones at each rescan, for configuration changes
                if rescan or device not in self._subscriptions:
                    try:
                        self._sync_device(device)
                    except Exception as exc:  # keep discovering the other devices
                        logger.exception("exporting %s failed", device)
                        self._record_error(f"exporting {device} failed: {exc}")
            self._first_scan.set()
            pause = self._retry_period if self._waiting else self._rescan_period
            self._wake.wait(pause)
            if self._wake.is_set():
                self._wake.clear()
                next_scan = 0.0

    def _matching_devices(self, known: list[str]) -> list[str]:
        """Devices defined in the Tango database matching the device globs (`known` on failure)."""
        try:
            database = self._database or tango.Database()
            self._database = database
            found: set[str] = set()
            for pattern in self.config.devices:
                found.update(name.lower() for name in database.command_inout("DbGetDeviceWideList", pattern))
        except tango.DevFailed as exc:
            self._record_error(f"cannot list devices in the Tango database: {error_text(exc)}")
            return known
        return sorted(d for d in found if not d.startswith("dserver/") and d not in self._exclude)

    def _sync_device(self, device: str) -> None:
        """Export a device's attributes; for a device already exported, publish attributes that
        appeared and bring PVs up to date with changed configurations (units, limits, enum labels)."""
        try:
            infos = self._subscriber.proxy(device).attribute_list_query_ex()
        except tango.DevFailed as exc:
            if device not in self._subscriptions:  # an exported device's outage is the engine's to report
                with self._lock:
                    self._waiting[device] = error_text(exc)
            return
        new = []
        for info in infos:
            if not self.config.exports(device, info.name):
                continue
            try:
                mapping = attribute_mapping(device, info)
            except (TypeError, KeyError) as exc:
                logger.warning("not exporting %s/%s: %s", device, info.name, exc)
                continue
            pv = self._by_attribute.get((device, info.name.lower()))
            if pv is None:
                name = self.config.pv_name(device, info.name)
                shared = SharedPV(handler=_PutHandler(self, name), initial=mapping.initial(), queue=self._puts)
                new.append(ExportedPv(name, mapping, self.config.allows_put(device, info.name), shared))
            elif mapping.attr != pv.mapping.attr:
                self._reconfigure(pv, mapping)
        with self._lock:
            for pv in new:
                self._pvs[pv.name] = pv
                self._by_attribute[(device, pv.attribute.lower())] = pv
            self._waiting.pop(device, None)
        if not new:
            with self._lock:
                self._subscriptions.setdefault(device, [])
            return
        for pv in new:
            self._provider.add(pv.name, pv.shared)
        subscription = self._subscriber.subscribe(device, [pv.attribute for pv in new], self._on_update)
        with self._lock:
            self._subscriptions.setdefault(device, []).append(subscription)
        logger.info("exported %d PVs of %s", len(new), device)

    def _reconfigure(self, pv: ExportedPv, mapping: AttributeMapping) -> None:
        """The attribute's configuration changed: new metadata, or a new PV type when it must."""
        old, pv.mapping = pv.mapping, mapping
        mapping.continue_from(old)
        if mapping.type.aspy() == old.type.aspy():
            mapping.type = old.type  # posts must use the very Type the PV was opened with
            metadata = mapping.metadata()
            if metadata is not None:
                pv.shared.post(metadata)
            logger.info("%s: new configuration from Tango", pv.name)
            return
        # Clients see a disconnect and reconnect to the new type; post the current value at once
        # so an attribute that rarely changes does not stay INVALID until its next event.
        pv.shared.close()
        pv.shared.open(mapping.initial())
        logger.info("%s: Tango type changed, PV re-created as %s", pv.name, mapping.normative_type)
        try:
            reply = self._subscriber.proxy(pv.device).read_attribute(pv.attribute)
        except tango.DevFailed:
            return  # the engine's next update (or error) follows
        value = mapping.attr.from_tango(reply.value)
        self._on_update(AttributeUpdate(pv.device, pv.attribute, value, reply.quality, reply.time.totime(), None))

    # ---- updates -------------------------------------------------------------------------------
    def _on_update(self, update: AttributeUpdate) -> None:
        pv = self._by_attribute.get((update.device, update.attribute.lower()))
        if pv is None:
            return
        pv.shared.post(pv.mapping.update(update))
        self.update_count += 1
        self._rate.tick()
        if update.error is None:
            self.ages.add(update.timestamp)
            pv.error = None
        elif update.error != pv.error:  # count each new error once, not each repetition
            pv.error = update.error
            self._record_error(f"{pv.name}: {update.error}")

    def _record_error(self, message: str) -> None:
        self.error_count += 1
        self.last_error = message
        logger.warning("%s", message)

    # ---- puts ----------------------------------------------------------------------------------
    def _put(self, name: str, op: Any) -> None:
        """Write a client's put to Tango; every refusal or failure reaches the client as an error."""
        pv = self._pvs[name]
        target = f"{pv.device}/{pv.attribute}"
        if not pv.writable:
            op.done(error=f"{name} is read-only: add '{target}' to put_allowlist of the PVA bridge to allow puts")
            return
        if not pv.mapping.attr.is_writable:
            op.done(error=f"{name} is read-only: Tango attribute {target} is not writable")
            return
        try:
            value = pv.mapping.from_put(op.value())
            self._subscriber.proxy(pv.device).write_attribute(pv.attribute, value)
        except (TypeError, ValueError) as exc:
            self._record_error(f"put to {name} refused: {exc}")
            op.done(error=f"put to {name} refused: {exc}")
            return
        except tango.DevFailed as exc:
            self._record_error(f"put to {name} failed in Tango: {error_text(exc)}")
            op.done(error=f"Tango refused the write to {target}: {error_text(exc)}")
            return
        self.put_count += 1
        op.done()
