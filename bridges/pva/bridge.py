"""The bridge itself: Tango attributes followed by the shared engine, republished as p4p SharedPVs.

`TangoPvaBridge` has no Tango server code (the `PvaBridge` device in `device.py` wraps it), so
tests and benchmarks can also run it inside a plain process.

The PVA sink of `bridges.core.BridgeCore`: the core finds devices and attributes (discovery,
filters, retries, rescans, counters) and follows them through the shared engine; this module
exports one PV per attribute (opened INVALID until Tango's first value), posts every update to it
and brings it up to date when the engine reports a configuration change (units, limits, enum
labels; a new PV type when it must). Each device also gets one PV per command without input (a
put of 1 runs it) and its PVI structure `{DEVICE}:PVI` listing them all (`pvi.py`), for
ophyd-async's PviDeviceConnector. Puts run on a small pool of worker threads so one slow Tango
write or command does not hold up the others.
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

from ophyd_tango.core.discovery import defined_devices
from ophyd_tango.core.errors import error_text
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, TangoSubscriber, write_attribute
from ophyd_tango.core.types import AttributeType

from ..core import BridgeCore
from .config import BridgeConfig
from .mapping import AttributeMapping, attribute_mapping
from .pvi import PVI_SUFFIX, attribute_access, command_value, exported_commands, pvi_value
from .search_relay import SearchRelay

__all__ = ["ExportedCommand", "ExportedPv", "TangoPvaBridge"]

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


@dataclass
class ExportedCommand:
    """One command PV (a PVI `x` entry) and the Tango command behind it."""

    name: str
    device: str
    command: str
    description: str
    writable: bool  # allowed by put_allowlist
    shared: SharedPV = field(repr=False)


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
    """p4p handler of one PV: runs the bridge's put (or command) on the put worker pool."""

    def __init__(self, bridge: TangoPvaBridge, pv_name: str):
        self._bridge = bridge
        self._pv_name = pv_name

    def put(self, shared: SharedPV, op: Any) -> None:
        self._bridge._put(self._pv_name, op)


class _CommandHandler(_PutHandler):
    def put(self, shared: SharedPV, op: Any) -> None:
        self._bridge._run_command(self._pv_name, op)


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
        selection = config.selection(exclude_devices)
        listing = None
        if database is not None:
            listing = lambda: defined_devices(database, selection.devices, selection.exclude_devices)  # noqa: E731
        self._core = BridgeCore(
            self,
            self._subscriber,
            selection,
            list_devices=listing,
            retry_period=retry_period,
            rescan_period=rescan_period,
            name="pva-bridge",
        )
        self._provider = StaticProvider("tango-pva-bridge")
        self._puts = ThreadedWorkQueue(name="pva-bridge-put", workers=put_workers, daemon=True, maxsize=256)
        self._server: Server | None = None
        self._relay: SearchRelay | None = None
        self._pvs: dict[str, ExportedPv] = {}  # PV name -> PV
        self._by_attribute: dict[tuple[str, str], ExportedPv] = {}  # (device, attribute lower) -> PV
        self._commands: dict[str, ExportedCommand] = {}  # PV name -> command PV
        self._pvi: dict[str, SharedPV] = {}  # device -> its PVI PV
        self._pvi_entries: dict[str, dict[str, dict[str, str]]] = {}  # device -> child -> {access: PV}
        self._pvi_lock = threading.Lock()  # discovery and configuration events both re-serve PVI
        self.ages = AgeTracker()
        self.put_count = 0

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
        if self.config.relays_searches:
            self._relay = SearchRelay(self.config.interface, int(conf["EPICS_PVAS_BROADCAST_PORT"])).start()
        self._core.start()
        return self

    def wait_first_scan(self, timeout: float) -> bool:
        """True once every matching device has been tried once."""
        return self._core.wait_first_scan(timeout)

    def rescan(self) -> None:
        """Look for new devices and attributes (and retry unreachable devices) now."""
        self._core.rescan()

    def stop(self) -> None:
        self._core.stop()
        if self._own_subscriber:
            self._subscriber.close()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        for shared in [pv.shared for pv in self._pvs.values()] + [c.shared for c in self._commands.values()]:
            shared.close()
        for shared in list(self._pvi.values()):
            shared.close()
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
    def relayed_searches(self) -> int:
        """Searches of this host's clients without EPICS settings handed to the server."""
        return self._relay.relayed if self._relay is not None else 0

    @property
    def pv_names(self) -> list[str]:
        return sorted(self._pvs)

    @property
    def pv_count(self) -> int:
        return len(self._pvs)

    @property
    def pvi_names(self) -> list[str]:
        """The PVI PV of each exported device."""
        return sorted(self.config.pv_name(device, PVI_SUFFIX) for device in self._pvi)

    @property
    def command_pv_names(self) -> list[str]:
        return sorted(self._commands)

    @property
    def disconnected_pv_count(self) -> int:
        return sum(1 for pv in list(self._pvs.values()) if pv.in_error)

    @property
    def waiting_devices(self) -> dict[str, str]:
        """Matching devices not exported yet -> why."""
        return self._core.waiting_devices

    @property
    def exported_devices(self) -> list[str]:
        return self._core.followed_devices

    @property
    def update_rate(self) -> float:
        """PV updates per second over the last few seconds."""
        return self._core.update_rate

    @property
    def update_count(self) -> int:
        return self._core.update_count

    @property
    def error_count(self) -> int:
        return self._core.error_count

    @property
    def last_error(self) -> str:
        return self._core.last_error

    def pv(self, name: str) -> ExportedPv:
        return self._pvs[name]

    # ---- the sink side of the core ---------------------------------------------------------------
    def add_attributes(self, device: str, types: list[AttributeType]) -> list[str]:
        """Open one PV per attribute the PVA mapping can carry; those are the ones followed."""
        new = []
        for atype in types:
            try:
                mapping = attribute_mapping(device, atype)
            except (TypeError, KeyError) as exc:
                logger.warning("not exporting %s/%s: %s", device, atype.name, exc)
                continue
            name = self.config.pv_name(device, atype.name)
            shared = SharedPV(handler=_PutHandler(self, name), initial=mapping.initial(), queue=self._puts)
            new.append(ExportedPv(name, mapping, self.config.allows_put(device, atype.name), shared))
        entries = {}
        for pv in new:
            self._pvs[pv.name] = pv
            self._by_attribute[(device, pv.attribute.lower())] = pv
            self._provider.add(pv.name, pv.shared)
            entries[pv.attribute] = {attribute_access(pv.mapping.attr): pv.name}
        if device not in self._pvi:
            self._add_commands(device, entries)
        if new:
            logger.info("exported %d PVs of %s", len(new), device)
        self._update_pvi(device, entries)
        return [pv.attribute for pv in new]

    def _add_commands(self, device: str, entries: dict[str, dict[str, str]]) -> None:
        """One PV (an `x` entry) per command of `device` without input that the filters select."""
        try:
            commands = exported_commands(self._subscriber.proxy(device).command_list_query())
        except tango.DevFailed as exc:
            self._core.record_error(f"cannot list the commands of {device}: {error_text(exc)}")
            return
        for info in commands:
            name = self.config.pv_name(device, info.cmd_name)
            if info.cmd_name in entries or not self.config.exports(device, info.cmd_name):
                continue
            description = info.in_type_desc if info.in_type_desc not in ("", "Uninitialised") else info.cmd_name
            shared = SharedPV(handler=_CommandHandler(self, name), initial=command_value(description), queue=self._puts)
            writable = self.config.allows_put(device, info.cmd_name)
            self._commands[name] = ExportedCommand(name, device, info.cmd_name, description, writable, shared)
            self._provider.add(name, shared)
            entries[info.cmd_name] = {"x": name}

    def _update_pvi(self, device: str, changed: dict[str, dict[str, str]]) -> None:
        """Serve `{DEVICE}:PVI` with the `changed` entries (new, or with a new access mode); it is
        re-served with a new structure type when they change it, and clients reconnect."""
        with self._pvi_lock:
            entries = self._pvi_entries.setdefault(device, {})
            shared = self._pvi.get(device)
            if shared is not None and all(entries.get(name) == modes for name, modes in changed.items()):
                return
            entries.update(changed)
            value = pvi_value(f"Tango device {device}", entries)
            if shared is None:
                self._pvi[device] = SharedPV(initial=value)
                self._provider.add(self.config.pv_name(device, PVI_SUFFIX), self._pvi[device])
            else:
                shared.close()
                shared.open(value)

    def on_config(self, update: ConfigUpdate) -> None:
        pv = self._by_attribute.get((update.device, update.type.name.lower()))
        if pv is None:
            return
        try:
            mapping = attribute_mapping(update.device, update.type)
        except (TypeError, KeyError) as exc:
            self._core.record_error(f"{pv.name}: new Tango configuration not exportable: {exc}")
            return
        if mapping.attr != pv.mapping.attr:
            self._reconfigure(pv, mapping)
        self._update_pvi(update.device, {pv.attribute: {attribute_access(mapping.attr): pv.name}})

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
        self.on_update(AttributeUpdate(pv.device, pv.attribute, value, reply.quality, reply.time.totime(), None))

    # ---- updates -------------------------------------------------------------------------------
    def on_update(self, update: AttributeUpdate) -> None:
        pv = self._by_attribute.get((update.device, update.attribute.lower()))
        if pv is None:
            return
        pv.shared.post(pv.mapping.update(update))
        if update.error is None:
            self.ages.add(update.timestamp)
            pv.error = None
        elif update.error != pv.error:  # count each new error once, not each repetition
            pv.error = update.error
            self._core.record_error(f"{pv.name}: {update.error}")

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
            write_attribute(self._subscriber.proxy(pv.device), pv.attribute, value)
        except (TypeError, ValueError) as exc:
            self._core.record_error(f"put to {name} refused: {exc}")
            op.done(error=f"put to {name} refused: {exc}")
            return
        except tango.DevFailed as exc:
            self._core.record_error(f"put to {name} failed in Tango: {error_text(exc)}")
            op.done(error=f"Tango refused the write to {target}: {error_text(exc)}")
            return
        self.put_count += 1
        op.done()

    def _run_command(self, name: str, op: Any) -> None:
        """Run the Tango command of a command PV on a put of 1 (True); report its outcome."""
        command = self._commands[name]
        target = f"{command.device}/{command.command}"
        if not command.writable:
            op.done(error=f"{name} is read-only: add '{target}' to put_allowlist of the PVA bridge to run the command")
            return
        value = op.value()
        if not value.changed("value") or not value["value"]:
            op.done(error=f"put 1 (True) to {name} to run the Tango command {target}")
            return
        command.shared.post(command_value(command.description, running=True))
        try:
            self._subscriber.proxy(command.device).command_inout(command.command)
        except tango.DevFailed as exc:
            message = f"Tango command {target} failed: {error_text(exc)}"
            self._core.record_error(f"{name}: {message}")
            command.shared.post(command_value(command.description, failure=message))
            op.done(error=message)
            return
        command.shared.post(command_value(command.description))
        self.put_count += 1
        op.done()
