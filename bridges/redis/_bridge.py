"""What the Redis bridge does, without the Tango server around it.

`RedisBridgeCore` is the Redis sink of `bridges.core.BridgeCore`: the core finds the devices
and attributes to follow and follows them through the shared engine; this module turns every
`AttributeUpdate` into Redis writes through one `RedisPublisher`: the last value (SET + PUBLISH),
the meta hash (written again on every configuration update of the engine), an optional capped
stream, throttled image previews, and the BEC-style file and progress events.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tango

from ophyd_tango.core.discovery import attribute_matches
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, TangoSubscriber
from ophyd_tango.core.types import AttributeType

from ..core import BridgeCore, Selection
from ._layout import KeyLayout
from ._publisher import RedisPublisher
from ._serialisation import pack, value_message

log = logging.getLogger(__name__)

# BEC's file event fields, in the order documented in docs/redis.md.
FILE_EVENT_FIELDS = ("file_path", "file_type", "hinted_location", "done", "success")


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
    progress_attributes: list[str] = field(default_factory=lambda: ["task_progress"])
    progress_done_attributes: list[str] = field(default_factory=lambda: ["task_state"])
    discovery_period: float = 5.0
    exclude_devices: list[str] = field(default_factory=list)


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
        """Route the new attributes and write their meta hashes; all of them are followed."""
        for info in types:
            route = self._route(device, info)
            self._routes[(device, info.name.lower())] = route
            self._write_meta(route, info)
        self._routes_seen.clear()
        return [info.name for info in types]

    def on_config(self, update: ConfigUpdate) -> None:
        route = self._routes.get((update.device, update.type.name.lower()))
        if route is not None:
            route.info = update.type
            self._write_meta(route, update.type)

    def _route(self, device: str, info: AttributeType) -> _Route:
        options, layout, name = self.options, self.layout, info.name
        route = _Route(device, name, info, layout.value(device, name))
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
        route.value_only = not (
            route.stream_key
            or route.preview_key
            or route.file_event_key
            or route.progress_key
            or route.is_frame_counter
        )
        return route

    def _write_meta(self, route: _Route, info: AttributeType) -> None:
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
        extra: dict[str, Any] = {}
        if route.preview_key is not None and update.error is None:
            route.images_seen += 1
            now = time.monotonic()
            if now - route.last_image < self.options.image_period:
                return  # images are throttled; the frame number tells readers what they missed
            route.last_image = now
            extra["frame"] = self._counters.get(update.device, route.images_seen)
        elif route.is_frame_counter and update.error is None:
            self._counters[update.device] = int(value)
        payload = pack(value_message(value, update.timestamp, str(update.quality), error=update.error, **extra))
        publisher = self.publisher
        publisher.set_and_publish(route.value_key, payload)
        if route.stream_key is not None:
            publisher.add_to_stream(route.stream_key, payload, self.options.stream_maxlen)
        if route.preview_key is not None and update.error is None:
            now = time.monotonic()
            if now - route.last_preview >= self.options.preview_period:
                route.last_preview = now
                publisher.add_to_stream(
                    route.preview_key,
                    payload,
                    self.options.preview_maxlen,
                    approximate=False,
                    expire_s=self.options.preview_expiry,
                )
        if route.file_event_key is not None and update.error is None:
            event = file_event(value)
            if event is not None:
                event.update(device=update.device, timestamp=update.timestamp)
                publisher.set_and_publish(route.file_event_key, pack(event))
        if route.progress_key is not None and update.error is None:
            self._publish_progress(route, value, update.timestamp)

    def _publish_progress(self, route: _Route, value: Any, timestamp: float) -> None:
        progress = self._progress.setdefault(
            route.device, {"value": 0.0, "max_value": 1.0, "done": True, "device": route.device}
        )
        if route.is_progress_value:
            progress["value"] = float(value)
            progress["max_value"] = progress_maximum(route.info)
            progress["done"] = progress["value"] >= progress["max_value"] or progress.get("idle", False)
        else:
            # A task state: done unless the task is running.
            label = route.info.label_of(value) if route.info.kind == "enum" else str(value)
            progress["idle"] = label.upper() not in ("RUNNING", "MOVING", "BUSY", "ACTIVE")
            progress["done"] = progress["idle"] or progress["value"] >= progress["max_value"]
        progress["timestamp"] = timestamp
        message = {key: progress[key] for key in ("value", "max_value", "done", "device", "timestamp")}
        self.publisher.set_and_publish(route.progress_key, pack(message))


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
