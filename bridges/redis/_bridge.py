"""What the Redis bridge does, without the Tango server around it.

`RedisBridgeCore` is the Redis sink of `bridges.core.BridgeCore`: the core finds the devices
and attributes to follow and follows them through the shared engine; this module turns every
`AttributeUpdate` into Redis writes through one `RedisPublisher`, in one or both layouts:

- `tango`: the last value (SET + PUBLISH), the meta hash (written again on every configuration
  update of the engine), an optional capped stream, throttled image previews, file and progress
  events, under `tango:{device}/{attr}`;
- `bec`: BEC's own endpoints and message types (`_bec.py`), per flat device name (`_bec_device.py`):
  a DeviceMessage of the device's read set (its roles' kinds, as `TangoDevice.read()` reads it) at
  `info/devices/readback/{name}` and `info/devices/read/{name}`, its configuration at
  `info/devices/read_configuration/{name}`, ProgressMessage, FileMessage, DevicePreviewMessage,
  and the DeviceInfoMessage and device config BEC's device manager lists devices from.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tango

from ophyd_tango.core.discovery import attribute_matches, database, defined_devices
from ophyd_tango.core.names import python_names
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, TangoSubscriber
from ophyd_tango.core.types import AttributeType

from ..core import BridgeCore, Selection
from ._bec import (
    PREVIEW_FIELD,
    BecEndpoints,
    device_config_message,
    device_config_update_message,
    device_info_message,
    device_message,
    file_message,
    preview_message,
)
from ._bec import progress_message as bec_progress_message
from ._bec_device import BecDevice, device_roles
from ._layout import KeyLayout
from ._publisher import RedisPublisher
from ._serialisation import pack, value_message

log = logging.getLogger(__name__)

# BEC's file event fields, in the order documented in docs/redis.md.
FILE_EVENT_FIELDS = ("file_path", "file_type", "hinted_location", "done", "success")
LAYOUTS = ("tango", "bec")


def parse_layout(values: list[str]) -> frozenset[str]:
    """The `layout` property ("tango", "bec", or both) as a set; ValueError naming the allowed values."""
    chosen = {v.strip().lower() for value in values for v in value.split(",") if v.strip()}
    unknown = sorted(chosen - set(LAYOUTS))
    if unknown or not chosen:
        raise ValueError(f"layout {', '.join(unknown) or '(empty)'} is not one of: {', '.join(LAYOUTS)} (or both)")
    return frozenset(chosen)


def parse_name_map(entries: list[str]) -> dict[str, str]:
    """`["sim/pilatus/1=pilatus"]` -> {"sim/pilatus/1": "pilatus"}; ValueError naming the bad entry."""
    names = {}
    for entry in entries:
        device, sep, name = entry.partition("=")
        if not sep or device.count("/") != 2 or not name.strip():
            raise ValueError(f"bec_names entry {entry!r} is not 'domain/family/member=name'")
        names[device.strip().lower()] = name.strip()
    return names


@dataclass
class BridgeOptions:
    """What to follow and how; the device properties of `RedisBridge` fill this in."""

    devices: list[str] = field(default_factory=lambda: ["sim/*/*"])
    attributes: list[str] = field(default_factory=lambda: ["*"])
    exclude_attributes: list[str] = field(default_factory=list)
    stream_attributes: list[str] = field(default_factory=list)
    stream_maxlen: int = 1000
    preview_period: float = 0.5
    preview_maxlen: int = 10
    preview_expiry: int = 60
    image_period: float = 0.0
    frame_counter_attributes: list[str] = field(default_factory=lambda: ["image_counter", "last_image_acquired"])
    file_event_attributes: list[str] = field(default_factory=lambda: ["file_event"])
    progress_attributes: list[str] = field(default_factory=lambda: ["task_progress", "move_progress"])
    progress_done_attributes: list[str] = field(default_factory=lambda: ["task_state"])
    discovery_period: float = 5.0
    exclude_devices: list[str] = field(default_factory=list)
    layout: frozenset[str] = frozenset({"tango"})
    bec_names: dict[str, str] = field(default_factory=dict)  # device -> flat name (else alias, else member)
    bec_device_config: bool = True  # write BEC's device config (info/devices/config) of the bridged devices


def meta_fields(info: AttributeType) -> dict[str, str]:
    """The `:meta` hash of an attribute: text fields, only those that are set."""
    fields: dict[str, Any] = {
        "label": info.label,
        "unit": info.unit,
        "format": info.format,
        "description": info.description,
        "min_value": info.min_value,
        "max_value": info.max_value,
        "min_alarm": info.min_alarm,
        "max_alarm": info.max_alarm,
        "min_warning": info.min_warning,
        "max_warning": info.max_warning,
        "data_type": info.data_type.name,
        "data_format": info.data_format.name,
        "writable": info.writable.name,
        "dtype": info.numpy_dtype.str,
        "bluesky_dtype": info.bluesky_dtype,
        "shape": json.dumps(list(info.shape)),
    }
    if info.enum_labels:
        fields["enum_labels"] = json.dumps(list(info.enum_labels))
    if (precision := info.precision) is not None:
        fields["precision"] = precision
    return {key: str(value) for key, value in fields.items() if value is not None}


@dataclass
class _Route:
    """Where the updates of one attribute go; built once per attribute at discovery."""

    device: str
    attribute: str
    info: AttributeType
    value_key: str
    stream_key: str | None = None
    preview_key: str | None = None
    file_event_key: str | None = None
    progress_key: str | None = None
    is_frame_counter: bool = False
    is_progress_value: bool = False
    last_preview: float = 0.0
    last_image: float = 0.0
    images_seen: int = 0

    value_only: bool = False  # only the value key is written (set by `RedisBridgeCore._route`)
    tango: bool = True  # the tango layout is written
    bec: BecDevice | None = None  # the BEC device this attribute belongs to (bec layout)
    bec_signal: str | None = None  # its name in the device's reading, when read() reads it
    bec_config_signal: str | None = None  # its name in the device's configuration, when configuration
    bec_preview_key: str | None = None


class RedisBridgeCore:
    """Follows Tango devices and mirrors them into Redis; `start()`, `close()`, `status()`."""

    def __init__(
        self,
        publisher: RedisPublisher,
        subscriber: TangoSubscriber,
        options: BridgeOptions | None = None,
        layout: KeyLayout | None = None,
    ) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.options = options = options or BridgeOptions()
        self.layout = layout or KeyLayout()
        selection = Selection(options.devices, options.exclude_devices, options.attributes, options.exclude_attributes)
        self._core = BridgeCore(
            self,
            subscriber,
            selection,
            retry_period=options.discovery_period,
            rescan_period=options.discovery_period,
            name="redis-bridge",
        )
        self._routes: dict[tuple[str, str], _Route] = {}
        # (device, attribute as the engine spells it) -> route, filled on first use: no lower() per update
        self._routes_seen: dict[tuple[str, str], _Route | None] = {}
        self._counters: dict[str, int] = {}  # device -> last frame counter value
        self._progress: dict[str, dict[str, Any]] = {}  # device -> last progress event
        self._listeners: list[Callable[[Any], None]] = []
        self._bec_devices: dict[str, BecDevice] = {}
        self._bec_names: dict[str, str] = dict(options.bec_names)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> "RedisBridgeCore":
        self._core.start()
        return self

    def close(self) -> None:
        self._core.stop()

    @property
    def followed_devices(self) -> list[str]:
        return self._core.followed_devices

    @property
    def attribute_count(self) -> int:
        return len(self._routes)

    @property
    def discovery_error(self) -> str:
        return self._core.last_error

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        """Also hand every update to `listener` (the OAV forwarder uses this); never raises."""
        self._listeners.append(listener)

    # -- the sink side of the core ----------------------------------------------------------
    def add_attributes(self, device: str, types: list[AttributeType]) -> list[str]:
        """Route the new attributes and write their meta hashes (and BEC's device info); all of
        them are followed."""
        first = device not in self._bec_devices
        bec = self._learn_bec_device(device, types) if "bec" in self.options.layout else None
        for info in types:
            route = self._route(device, info, bec)
            self._routes[(device, info.name.lower())] = route
            self._write_meta(route, info)
        self._routes_seen.clear()
        if bec is not None:
            self._write_bec_info(bec, new=first)
        return [info.name for info in types]

    def on_config(self, update: ConfigUpdate) -> None:
        route = self._routes.get((update.device, update.type.name.lower()))
        if route is not None:
            route.info = update.type
            self._write_meta(route, update.type)
            if route.bec is not None:
                route.bec.types[update.type.name.lower()] = update.type
                self._write_bec_info(route.bec, new=False)

    def bec_name(self, device: str) -> str:
        """The flat BEC name of `device`: the `bec_names` map, else what `ophyd_tango.connect` names it."""
        if device not in self._bec_names:
            try:
                db = database(timeout=self.subscriber.timeout)
                devices = sorted({device, *defined_devices(db, self.options.devices, self.options.exclude_devices)})
                aliases = {}
                for candidate in devices:
                    with contextlib.suppress(tango.DevFailed):  # no alias
                        aliases[candidate] = db.get_alias_from_device(candidate)
            except tango.DevFailed:
                devices, aliases = [device], {}
            for candidate, name in python_names(devices, aliases).items():
                self._bec_names.setdefault(candidate, name)  # names given stay as they are
        return self._bec_names[device]

    def _learn_bec_device(self, device: str, types: list[AttributeType]) -> BecDevice:
        """The device as BEC sees it, its roles asked for once, its kinds from all its attributes."""
        all_types = self.subscriber.attribute_types(device)
        bec = self._bec_devices.get(device)
        if bec is None:
            described = device_roles(self.subscriber.proxy(device), all_types)
            if described.problem:
                log.warning("%s: %s; BEC reads its default read set", device, described.problem)
            bec = self._bec_devices[device] = BecDevice(self.bec_name(device), device, described)
        bec.learn(all_types, types)
        return bec

    def _write_bec_info(self, bec: BecDevice, *, new: bool) -> None:
        """BEC's DeviceInfoMessage of `bec`; for a `new` device (with `bec_device_config`) also the
        device config listing every bridged device, and an "add" of it for BEC clients running."""
        self.publisher.set(bec.info_key, device_info_message(bec.name, bec.info()))
        if not self.options.bec_device_config or not new:
            return
        devices = [other.config() for other in sorted(self._bec_devices.values(), key=lambda d: d.name)]
        self.publisher.set(BecEndpoints.device_config(), device_config_message(devices))
        update = device_config_update_message("add", {bec.name: bec.config()})
        self.publisher.publish(BecEndpoints.device_config_update(), update)

    def _bec_route(self, route: _Route, info: AttributeType, bec: BecDevice) -> None:
        """Where an attribute goes in BEC: the device's reading or configuration, a preview."""
        route.bec = bec
        if route.file_event_key is None:  # file events travel as BEC's FileMessage
            route.bec_signal = bec.reading_signal(info)
            route.bec_config_signal = bec.configuration_signal(info)
        if route.preview_key is not None:
            route.bec_preview_key = BecEndpoints.preview(bec.name, info.name)

    def _route(self, device: str, info: AttributeType, bec: BecDevice | None) -> _Route:
        options, layout, name = self.options, self.layout, info.name
        route = _Route(device, name, info, layout.value(device, name), tango="tango" in options.layout)
        if attribute_matches(options.stream_attributes, device, name):
            route.stream_key = layout.stream(device, name)
        if info.is_image and info.kind != "encoded":
            route.preview_key = layout.preview(device, name)
        if attribute_matches(options.file_event_attributes, device, name):
            route.file_event_key = layout.file_event(device)
        route.is_progress_value = attribute_matches(options.progress_attributes, device, name)
        if route.is_progress_value or attribute_matches(options.progress_done_attributes, device, name):
            route.progress_key = layout.progress(device)
        route.is_frame_counter = attribute_matches(options.frame_counter_attributes, device, name)
        if bec is not None:
            self._bec_route(route, info, bec)
        route.value_only = (
            route.tango
            and route.bec is None
            and not (
                route.stream_key
                or route.preview_key
                or route.file_event_key
                or route.progress_key
                or route.is_frame_counter
            )
        )
        return route

    def _write_meta(self, route: _Route, info: AttributeType) -> None:
        if not route.tango:
            return
        fields = meta_fields(info)
        self.publisher.set_hash(self.layout.meta(route.device, route.attribute), fields, pack(fields))

    def on_update(self, update: AttributeUpdate) -> None:
        """Encode and hand over; never raises into the engine."""
        try:
            self._publish(update)
        except Exception:
            log.exception("update of %s/%s not written to Redis", update.device, update.attribute)
        for listener in self._listeners:
            try:
                listener(update)
            except Exception:
                log.exception("bridge listener failed")

    def _publish(self, update: AttributeUpdate) -> None:
        device, attribute, value, quality, timestamp, error = update
        try:
            route = self._routes_seen[(device, attribute)]
        except KeyError:
            route = self._routes_seen[(device, attribute)] = self._routes.get((device, attribute.lower()))
        if route is None:
            return
        if isinstance(value, tango.DevState):
            value = str(value)
        if route.value_only:
            # Most updates: one scalar to SET and PUBLISH.
            self.publisher.set_and_publish(
                route.value_key, pack(value_message(value, timestamp, str(quality), error=error))
            )
            return
        preview_now = False
        extra: dict[str, Any] = {}
        if route.preview_key is not None and error is None:
            route.images_seen += 1
            now = time.monotonic()
            if now - route.last_image < self.options.image_period:
                return  # images are throttled; the frame number tells readers what they missed
            route.last_image = now
            extra["frame"] = self._counters.get(device, route.images_seen)
            if now - route.last_preview >= self.options.preview_period:
                route.last_preview = now
                preview_now = True
        elif route.is_frame_counter and error is None:
            self._counters[device] = int(value)
        event = file_event(value) if route.file_event_key is not None and error is None else None
        progress = (
            self._progress_of(route, value, timestamp) if route.progress_key is not None and error is None else None
        )
        if route.tango:
            self._publish_tango(route, value, quality, timestamp, error, extra, preview_now, event, progress)
        bec = route.bec
        if bec is None or error is not None:
            return  # BEC messages carry no errors: the last good reading stays
        publisher = self.publisher
        if route.bec_signal is not None:
            bec.reading[route.bec_signal] = bec.entry(route.info, value, timestamp)
            payload = device_message(bec.reading)
            publisher.set_and_publish(bec.readback_key, payload)
            publisher.set_and_publish(bec.read_key, payload)
        elif route.bec_config_signal is not None:
            bec.configuration[route.bec_config_signal] = bec.entry(route.info, value, timestamp)
            publisher.set_and_publish(bec.configuration_key, device_message(bec.configuration))
        if preview_now and route.bec_preview_key is not None and isinstance(value, np.ndarray):
            publisher.add_to_stream(
                route.bec_preview_key,
                preview_message(bec.name, route.attribute, value, timestamp),
                self.options.preview_maxlen,
                approximate=False,
                expire_s=self.options.preview_expiry,
                field=PREVIEW_FIELD,
            )
        if event is not None:
            publisher.set_and_publish(bec.file_event_key, file_message(event, bec.name))
        if progress is not None:
            payload = bec_progress_message(progress["value"], progress["max_value"], progress["done"])
            publisher.set_and_publish(bec.progress_key, payload)

    def _publish_tango(
        self,
        route: _Route,
        value: Any,
        quality: Any,
        timestamp: float,
        error: str | None,
        extra: dict[str, Any],
        preview_now: bool,
        event: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> None:
        payload = pack(value_message(value, timestamp, str(quality), error=error, **extra))
        publisher = self.publisher
        publisher.set_and_publish(route.value_key, payload)
        if route.stream_key is not None:
            publisher.add_to_stream(route.stream_key, payload, self.options.stream_maxlen)
        if preview_now and route.preview_key is not None:
            publisher.add_to_stream(
                route.preview_key,
                payload,
                self.options.preview_maxlen,
                approximate=False,
                expire_s=self.options.preview_expiry,
            )
        if event is not None and route.file_event_key is not None:
            publisher.set_and_publish(
                route.file_event_key, pack({**event, "device": route.device, "timestamp": timestamp})
            )
        if progress is not None and route.progress_key is not None:
            publisher.set_and_publish(route.progress_key, pack(progress))

    def _progress_of(self, route: _Route, value: Any, timestamp: float) -> dict[str, Any]:
        """The device's progress after this update: value, max_value, done, device, timestamp."""
        progress = self._progress.setdefault(
            route.device, {"value": 0.0, "max_value": 1.0, "done": True, "device": route.device}
        )
        if route.is_progress_value:
            progress["value"] = float(value)
            progress["max_value"] = progress_maximum(route.info)
        else:
            # A task state: done unless the task is running.
            label = route.info.label_of(value) if route.info.kind == "enum" else str(value)
            progress["idle"] = label.upper() not in ("RUNNING", "MOVING", "BUSY", "ACTIVE")
        # With a task state, it alone says when the task is done (a new task starts with the last
        # task's value at its maximum); without one, the value reaching its maximum does.
        idle = progress.get("idle")
        progress["done"] = idle if idle is not None else progress["value"] >= progress["max_value"]
        progress["timestamp"] = timestamp
        return {key: progress[key] for key in ("value", "max_value", "done", "device", "timestamp")}


def progress_maximum(info: AttributeType) -> float:
    """The `max_value` of a progress attribute: its declared maximum, else 100 for "%", else 1."""
    if info.max_value is not None:
        return info.max_value
    return 100.0 if info.unit == "%" else 1.0


def file_event(value: Any) -> dict[str, Any] | None:
    """BEC file-event fields from a `file_event` attribute value (JSON text or ("json", bytes))."""
    if isinstance(value, tuple) and len(value) == 2:
        value = value[1]
    if isinstance(value, bytes | bytearray | np.ndarray):
        value = bytes(value).decode()
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            log.warning("file_event value is not JSON: %.80s", value)
            return None
    if not isinstance(value, dict) or not value.get("file_path"):
        return None  # e.g. "{}" before the first file
    event = {key: value.get(key) for key in FILE_EVENT_FIELDS}
    event["done"] = bool(event["done"])
    event["success"] = bool(event["success"])
    if event["hinted_location"] is None:
        event["hinted_location"] = {}
    return event
