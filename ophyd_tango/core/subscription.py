"""The Tango subscription engine shared by ophyd_tango and the bridges.

Events first (change, then periodic, which work when the server pushes or polls the attribute),
client polling last. Each followed device gets one `DeviceProxy` and one worker thread that sets
up subscriptions, polls what has no events (all such attributes of a device in one
`read_attributes` call), checks the device is alive and re-subscribes after a server restart.
Updates for one attribute are delivered in order, never older than the last one delivered.
Configuration changes (units, limits, labels, after `set_attribute_config` or a restart with a
new configuration) are one more kind of update: `ConfigUpdate`, to subscribers that ask for them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tango

from ._private import call_event_callback_directly
from .errors import error_text, first_reason, is_timeout, is_unreachable
from .names import device_key
from .types import AttributeType, attribute_type

__all__ = [
    "AttributeUpdate",
    "ConfigUpdate",
    "Subscription",
    "TangoEventWarning",
    "TangoSubscriber",
    "write_attribute",
]

logger = logging.getLogger(__name__)

# Seconds past the timeout before a call the engine makes counts as unanswered: cppTango's
# reconnection after a timeout can hold one call for several timeouts (a hung server: 9 s at 3 s).
CALL_MARGIN = 0.5
_EVENT_TYPES = {"change": tango.EventType.CHANGE_EVENT, "periodic": tango.EventType.PERIODIC_EVENT}


def write_attribute(proxy: tango.DeviceProxy, attribute: str, value: Any) -> None:
    """`proxy.write_attribute`, also on a device whose server has just restarted.

    PyTango raises TypeError("unsupported data_format") when it could not fetch the attribute's
    configuration: the device went away (then the ping raises why) or has just come back (then
    the second write goes through)."""
    try:
        proxy.write_attribute(attribute, value)
    except TypeError:
        proxy.ping()
        proxy.write_attribute(attribute, value)


class TangoEventWarning(UserWarning):
    """An attribute has no usable Tango events and is polled by the client instead."""


class AttributeUpdate(NamedTuple):
    """One value (or error) of one attribute, as delivered to subscription callbacks."""

    device: str  # "sim/aerotech/x": lower case, no host
    attribute: str  # as the server spells it
    value: Any  # DevEnum -> int, DevState -> tango.DevState, image -> 2-D ndarray, DevEncoded -> (str, bytes)
    quality: tango.AttrQuality
    timestamp: float  # from Tango; for errors, when the error was seen
    error: str | None  # set (and value None) when the device is unreachable or the read failed


class ConfigUpdate(NamedTuple):
    """A new configuration of one attribute, as delivered to `on_config` callbacks."""

    device: str  # lower case, no host
    type: AttributeType  # the attribute's whole new configuration


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    try:
        return bool(a == b)
    except Exception:
        return False


class Subscription:
    """A callback's interest in some attributes of one device; `close()` ends it."""

    def __init__(
        self,
        channel: _DeviceChannel,
        attributes: list[str],
        callback: Callable[[AttributeUpdate], None],
        kinds: tuple[str, ...] = ("change", "periodic"),
        on_config: Callable[[ConfigUpdate], None] | None = None,
    ):
        self._channel = channel
        self.kinds = kinds
        self.attributes = attributes
        self.callback = callback
        self.on_config = on_config
        self.closed = False

    @property
    def device(self) -> str:
        return self._channel.key

    def modes(self) -> dict[str, str]:
        """How each attribute is followed now: 'change', 'periodic', 'polling' or 'pending'."""
        return {name: self._channel.mode(name, self.kinds) for name in self.attributes}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._channel.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AttributeFeed:
    """One attribute of one device: how it is followed and who gets its updates."""

    def __init__(self, name: str, kinds: tuple[str, ...]):
        self.name = name  # the caller's spelling until the server's is known
        self.kinds = kinds
        self.subscriptions: list[Subscription] = []
        self.receivers: tuple[Subscription, ...] = ()  # snapshot of `subscriptions` for delivery
        self.lock = threading.RLock()
        self.mode = "pending"  # pending | change | periodic | polling
        self.event_id: int | None = None
        self.generation = 0  # bumps on each (re)subscription; stale callbacks are ignored
        self.lost = False  # the event subscription stopped working; poll until re-subscribed
        self.warned = False
        self.why_no_events = "no event kinds requested"
        self.last: AttributeUpdate | None = None
        self.ready = threading.Event()  # set once the first set-up attempt is over

    @property
    def polled(self) -> bool:
        return self.mode in ("pending", "polling") or self.lost

    def deliver(self, update: AttributeUpdate, *, only_changes: bool = False) -> None:
        with self.lock:
            last = self.last
            if last is not None and update.error is None and last.error is None:
                if update.timestamp < last.timestamp:
                    return  # an older value than the one already delivered (event/poll overlap)
                if only_changes and update.quality == last.quality and _same_value(update.value, last.value):
                    return
            if (
                update.error is not None
                and last is not None
                and last.error == update.error
                and (only_changes or update.timestamp - last.timestamp < 1.0)
            ):
                return
            self.last = update
            for sub in self.receivers:
                if sub.closed:
                    continue
                try:
                    sub.callback(update)
                except Exception:
                    logger.exception(
                        "subscription callback %r failed on %s/%s", sub.callback, update.device, update.attribute
                    )


def _call(sub: Subscription, update: AttributeUpdate) -> None:
    if sub.closed:
        return
    try:
        sub.callback(update)
    except Exception:
        logger.exception("subscription callback %r failed on %s/%s", sub.callback, update.device, update.attribute)


class _DeviceChannel:
    """One device: its proxy, its attribute feeds and the worker thread that tends them."""

    def __init__(self, subscriber: TangoSubscriber, trl: str):
        self.subscriber = subscriber
        self.trl = trl
        self.key = device_key(trl)
        # (lower-case attribute name, event kinds) -> feed: subscribers asking the same share it
        self.feeds: dict[tuple[str, tuple[str, ...]], _AttributeFeed] = {}
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.pending: list[_AttributeFeed] = []
        self.dropped: list[_AttributeFeed] = []
        self.closed = False
        self.alive = True  # last known reachability
        self.types: dict[str, AttributeType] | None = None  # lower-case name -> type, learned once
        # configuration events: lower-case name -> event id; names still to subscribe; ids to drop
        self.config_events: dict[str, int] = {}
        self.config_pending: set[str] = set()
        self.config_dropped: list[int] = []
        self._proxy: tango.DeviceProxy | None = None
        # Liveness pings and polls run here, waited for at most the timeout (see `_bounded`).
        self._calls = self._new_call_thread()
        self._thread = threading.Thread(target=self._run, name=f"tango-subscriber:{self.key}", daemon=True)
        self._thread.start()

    # ---- public side (any thread) -------------------------------------------------------------
    def proxy(self) -> tango.DeviceProxy:
        with self.lock:
            if self._proxy is None:
                self._proxy = self.subscriber._make_proxy(self.trl)
            return self._proxy

    def mode(self, name: str, kinds: tuple[str, ...]) -> str:
        feed = self.feeds.get((name.lower(), kinds))
        if feed is None:
            return "none"
        return "polling" if feed.lost else feed.mode

    def add(self, sub: Subscription, kinds: tuple[str, ...]) -> list[_AttributeFeed]:
        new = []
        with self.lock:
            for name in sub.attributes:
                feed = self.feeds.get((name.lower(), kinds))
                if feed is None:
                    feed = self.feeds[(name.lower(), kinds)] = _AttributeFeed(name, kinds)
                    new.append(feed)
                    self.pending.append(feed)
                with feed.lock:
                    feed.subscriptions.append(sub)
                    feed.receivers = tuple(feed.subscriptions)
                    if feed.last is not None:
                        _call(sub, feed.last)  # a new subscriber gets the current value at once
                if sub.on_config is not None and name.lower() not in self.config_events:
                    self.config_pending.add(name.lower())
            self.wake.notify_all()
        return new

    def wait_setup(self, feeds: list[_AttributeFeed], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for feed in feeds:
            if not feed.ready.wait(max(0.0, deadline - time.monotonic())):
                return

    def remove(self, sub: Subscription) -> None:
        with self.lock:
            for name in sub.attributes:
                feed = self.feeds.get((name.lower(), sub.kinds))
                if feed is None:
                    continue
                with feed.lock:
                    if sub in feed.subscriptions:
                        feed.subscriptions.remove(sub)
                        feed.receivers = tuple(feed.subscriptions)
                if not feed.subscriptions:
                    del self.feeds[(name.lower(), sub.kinds)]
                    if feed in self.pending:
                        self.pending.remove(feed)
                    self.dropped.append(feed)
            if sub.on_config is not None:
                wanted = {n.lower() for s in self._config_subscriptions() for n in s.attributes}
                for name in {n.lower() for n in sub.attributes} - wanted:
                    self.config_pending.discard(name)
                    if name in self.config_events:
                        self.config_dropped.append(self.config_events.pop(name))
            self.wake.notify_all()

    def close(self, timeout: float) -> None:
        with self.lock:
            self.closed = True
            self.dropped.extend(self.feeds.values())
            for feed in self.feeds.values():
                feed.ready.set()
            self.feeds.clear()
            self.config_dropped.extend(self.config_events.values())
            self.config_events.clear()
            self.config_pending.clear()
            self.wake.notify_all()
        self._thread.join(timeout)
        self._calls.shutdown(wait=False, cancel_futures=True)

    def _new_call_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tango-call:{self.key}")

    def _bounded(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, waited for at most the timeout and CALL_MARGIN; then DevFailed
        API_DeviceTimedOut, so that a silent device is noticed within one timeout. The unanswered
        call is left to finish on its thread, and the next calls get a thread of their own: none
        ever waits behind a call that may never return."""
        calls = self._calls
        future = calls.submit(call, *args)
        limit = self.subscriber.timeout + CALL_MARGIN
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            with self.lock:
                if self._calls is calls:
                    self._calls = self._new_call_thread()
            calls.shutdown(wait=False)
            tango.Except.throw_exception(
                "API_DeviceTimedOut", f"{self.key}: no answer within {limit:g} s", "TangoSubscriber"
            )

    # ---- worker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        period = self.subscriber.poll_period
        liveness = self.subscriber.liveness_period
        next_poll = next_ping = time.monotonic()
        while True:
            with self.lock:
                if self.closed and not self.dropped and not self.config_dropped:
                    break
                pending, self.pending = list(self.pending), []
                dropped, self.dropped = self.dropped, []
                config_dropped, self.config_dropped = self.config_dropped, []
            self._unsubscribe(dropped)
            self._unsubscribe_configs(config_dropped)
            if self.closed:
                continue
            if pending:
                try:
                    self._set_up(pending)
                finally:
                    for feed in pending:
                        feed.ready.set()
                next_poll = time.monotonic() + period
            if self.config_pending and self.types is not None:
                self._subscribe_configs()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + period
                self._poll()
            if now >= next_ping:
                next_ping = now + liveness
                self._check_alive()
            with self.lock:
                if not (self.pending or self.dropped or self.config_dropped or self.closed):
                    self.wake.wait(max(0.0, min(next_poll, next_ping) - time.monotonic()))

    def _set_up(self, feeds: list[_AttributeFeed]) -> None:
        """Subscribe to events where the server offers them; the rest is polled."""
        try:
            proxy = self.proxy()
            types = self._learn_types(proxy)
        except tango.DevFailed as exc:
            self._device_down(feeds, error_text(exc))
            return
        unknown = [f for f in feeds if f.name.lower() not in types]
        for feed in unknown:
            feed.mode = "polling"
            feed.deliver(self._error(feed, f"device {self.key} has no attribute '{feed.name}'"))
        no_events = []
        for feed in feeds:
            if feed in unknown:
                continue
            feed.name = types[feed.name.lower()].name
            if not self._subscribe_events(proxy, feed):
                no_events.append(feed)
        if no_events:
            self._poll(no_events)
            if self.alive:
                for feed in no_events:
                    self._warn_polling(feed)

    def _learn_types(self, proxy: tango.DeviceProxy, *, again: bool = False) -> dict[str, AttributeType]:
        """Every attribute's configuration in one call (again after a restart: it may differ);
        configurations that changed are delivered as config updates."""
        if self.types is None or again:
            old = self.types
            infos = self._bounded(proxy.attribute_list_query_ex)
            self.types = {info.name.lower(): attribute_type(info) for info in infos}
            if old:
                for name, atype in self.types.items():
                    if name in old and old[name] != atype:
                        self._deliver_config(atype)
        return self.types

    # ---- configuration updates -----------------------------------------------------------------
    def _config_subscriptions(self) -> list[Subscription]:
        with self.lock:
            subs = {id(s): s for feed in self.feeds.values() for s in feed.subscriptions if s.on_config is not None}
        return list(subs.values())

    def _subscribe_configs(self) -> None:
        """Subscribe to configuration events (stateless: Tango itself subscribes again after a restart)."""
        with self.lock:
            names, self.config_pending = self.config_pending, set()
        proxy = self.proxy()
        for name in sorted(names):
            atype = (self.types or {}).get(name)
            if atype is None:
                continue  # an unknown attribute: its value subscription already says so
            try:
                event_id = proxy.subscribe_event(
                    atype.name, tango.EventType.ATTR_CONF_EVENT, self._on_config_event, stateless=True
                )
            except tango.DevFailed as exc:
                logger.warning("%s/%s: no configuration events: %s", self.key, atype.name, error_text(exc))
                continue
            with self.lock:
                if name in self.config_events or self.closed:
                    self.config_dropped.append(event_id)
                else:
                    self.config_events[name] = event_id

    def _unsubscribe_configs(self, event_ids: list[int]) -> None:
        for event_id in event_ids:
            try:
                self.proxy().unsubscribe_event(event_id)
            except Exception as exc:  # the server may be gone; dropped locally anyway
                logger.debug("unsubscribe configuration events of %s: %s", self.key, exc)

    def _on_config_event(self, event: tango.AttrConfEventData) -> None:
        if event.err or event.attr_conf is None:
            return  # an outage: the value subscriptions report it
        try:
            atype = attribute_type(event.attr_conf)
        except Exception:
            logger.exception("%s: configuration event not understood", self.key)
            return
        with self.lock:
            types = self.types or {}
            if types.get(atype.name.lower()) == atype:
                return  # the configuration already known (Tango sends one at subscription)
            self.types = {**types, atype.name.lower(): atype}  # a new dict: event callbacks re-read types
        self._deliver_config(atype)

    def _deliver_config(self, atype: AttributeType) -> None:
        update = ConfigUpdate(self.key, atype)
        name = atype.name.lower()
        for sub in self._config_subscriptions():
            callback = sub.on_config
            if callback is None or sub.closed or name not in {n.lower() for n in sub.attributes}:
                continue
            try:
                callback(update)
            except Exception:
                logger.exception("configuration callback %r failed on %s/%s", sub.on_config, self.key, atype.name)

    def _value(self, feed: _AttributeFeed, value: Any) -> Any:
        atype = (self.types or {}).get(feed.name.lower())
        return atype.from_tango(value) if atype is not None else value

    def _subscribe_events(self, proxy: tango.DeviceProxy, feed: _AttributeFeed) -> bool:
        for kind in feed.kinds:
            if kind not in _EVENT_TYPES:
                continue
            with feed.lock:
                feed.generation += 1
                generation = feed.generation
            callback = self._event_callback(feed, generation)
            try:
                event_id = proxy.subscribe_event(feed.name, _EVENT_TYPES[kind], callback, stateless=False)
            except tango.DevFailed as exc:
                feed.why_no_events = error_text(exc)
                if first_reason(exc) in ("API_CantConnectToDevice", "API_DeviceNotExported", "API_CorbaException"):
                    break
                continue
            call_event_callback_directly(proxy, event_id, callback)
            with feed.lock:
                feed.event_id, feed.mode, feed.lost = event_id, kind, False
            return True
        with feed.lock:
            feed.mode = "polling"
        return False

    def _event_callback(self, feed: _AttributeFeed, generation: int) -> Callable[[tango.EventData], None]:
        # The hot path: one call per Tango event. The attribute's type is looked up again only when
        # the device's types were re-learned (after a restart), not per event.
        key, name, types, convert = self.key, feed.name, None, None
        deliver, update_type, lock = feed.deliver, AttributeUpdate, feed.lock

        def on_event(event: tango.EventData) -> None:
            nonlocal types, convert, name
            if feed.generation != generation:
                return
            if event.err:
                with lock:
                    feed.lost = True
                deliver(self._error(feed, error_text(event.errors)))
                with self.lock:
                    self.wake.notify_all()
                return
            if self.types is not types or feed.name is not name:
                types, name = self.types, feed.name
                atype = (types or {}).get(name.lower())
                convert = atype.from_tango if atype is not None else None
            feed.lost = False
            attr = event.attr_value
            value = attr.value
            deliver(
                update_type(
                    key, name, value if convert is None else convert(value), attr.quality, attr.time.totime(), None
                )
            )

        return on_event

    def _error(self, feed: _AttributeFeed, text: str) -> AttributeUpdate:
        return AttributeUpdate(self.key, feed.name, None, tango.AttrQuality.ATTR_INVALID, time.time(), text)

    def _poll(self, feeds: list[_AttributeFeed] | None = None) -> None:
        """Read every polled attribute of the device in one call and deliver what changed."""
        if feeds is None:
            with self.lock:
                feeds = [f for f in self.feeds.values() if f.polled and f not in self.pending]
        if not feeds:
            return
        try:
            proxy = self.proxy()
            types = self._learn_types(proxy, again=not self.alive)
            feeds = [f for f in feeds if f.name.lower() in types]
            for feed in feeds:
                feed.name = types[feed.name.lower()].name
            replies = self._bounded(proxy.read_attributes, [f.name for f in feeds]) if feeds else []
        except tango.DevFailed as exc:
            # A device that does not answer is down for its evented attributes too: say so now,
            # not after the next liveness ping has waited out its own timeout.
            self._device_down(None if is_unreachable(exc) or is_timeout(exc) else feeds, error_text(exc))
            return
        self._device_up()
        for feed, reply in zip(feeds, replies, strict=True):
            if reply.has_failed:
                update = self._error(feed, error_text(reply.get_err_stack()))
            else:
                update = AttributeUpdate(
                    self.key, feed.name, self._value(feed, reply.value), reply.quality, reply.time.totime(), None
                )
            feed.deliver(update, only_changes=True)

    def _check_alive(self) -> None:
        """Ping devices followed by events: a dead server sends no events, only silence."""
        with self.lock:
            evented = [f for f in self.feeds.values() if not f.polled]
        if not evented:
            return
        try:
            self._bounded(self.proxy().ping)
        except tango.DevFailed as exc:
            self._device_down(None, error_text(exc))
            return
        self._device_up()

    def _device_down(self, feeds: list[_AttributeFeed] | None, text: str) -> None:
        """Deliver `text` as an error to `feeds` (None: all); evented ones are polled until the device is back."""
        self.alive = False
        with self.lock:
            feeds = list(self.feeds.values()) if feeds is None else feeds
        for feed in feeds:
            with feed.lock:
                if feed.mode in ("change", "periodic"):
                    feed.lost = True
                elif feed.mode == "pending":
                    feed.mode = "polling"
            feed.deliver(self._error(feed, text), only_changes=True)

    def _device_up(self) -> None:
        """After an outage, subscribe again: the restarted server knows nothing of our events."""
        if self.alive:
            return
        self.alive = True
        with self.lock:
            feeds = [f for f in self.feeds.values() if f.lost or f.mode == "polling"]
        if not feeds:
            return
        logger.info("device %s is back; subscribing to %d attribute(s) again", self.key, len(feeds))
        self._unsubscribe(feeds)
        proxy = self.proxy()
        for feed in feeds:
            if feed.name.lower() in (self.types or {}) and not self._subscribe_events(proxy, feed):
                self._warn_polling(feed)

    def _unsubscribe(self, feeds: list[_AttributeFeed]) -> None:
        for feed in feeds:
            with feed.lock:
                event_id, feed.event_id = feed.event_id, None
                feed.generation += 1
            if event_id is not None:
                try:
                    self.proxy().unsubscribe_event(event_id)
                except Exception as exc:  # the server may be gone; the subscription is dropped locally anyway
                    logger.debug("unsubscribe %s/%s: %s", self.key, feed.name, exc)

    def _warn_polling(self, feed: _AttributeFeed) -> None:
        if feed.warned or not feed.kinds:  # no kinds asked: polling is what the caller wants
            return
        feed.warned = True
        message = (
            f"{self.key}/{feed.name}: no Tango events ({feed.why_no_events}); polling it every "
            f"{self.subscriber.poll_period:g} s instead. Push change events from the server "
            f"or configure server polling to follow it efficiently."
        )
        logger.warning(message)
        warnings.warn(message, TangoEventWarning, stacklevel=2)


class TangoSubscriber:
    """Follows Tango attributes: events first, client polling last, reconnecting after restarts.

    One per process is fine; it shares one DeviceProxy (and one worker thread) per device.
    `poll_period`: client polling period for attributes without events; `timeout`: every Tango
    call's timeout and the longest `subscribe` blocks; `liveness_period`: how often devices
    followed by events are pinged, so a server restart is noticed quickly.
    """

    def __init__(self, *, poll_period: float = 0.5, timeout: float = 3.0, liveness_period: float = 1.0):
        self.poll_period = poll_period
        self.timeout = timeout
        self.liveness_period = liveness_period
        self._channels: dict[str, _DeviceChannel] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _channel(self, device: str) -> _DeviceChannel:
        key = device.lower()
        with self._lock:
            if self._closed:
                raise RuntimeError("this TangoSubscriber is closed")
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _DeviceChannel(self, device)
            return channel

    def _make_proxy(self, trl: str) -> tango.DeviceProxy:
        proxy = tango.DeviceProxy(trl, green_mode=tango.GreenMode.Synchronous)
        proxy.set_timeout_millis(int(self.timeout * 1000))
        return proxy

    def proxy(self, device: str) -> tango.DeviceProxy:
        """The shared DeviceProxy for `device` (its timeout set to this subscriber's)."""
        return self._channel(device).proxy()

    def attribute_types(self, device: str, *, refresh: bool = False) -> dict[str, AttributeType]:
        """Every attribute of `device` by lower-case name (one bulk configuration query, cached)."""
        channel = self._channel(device)
        with channel.lock:
            return dict(channel._learn_types(channel.proxy(), again=refresh))

    def subscribe(
        self,
        device: str,
        attributes: list[str],
        callback: Callable[[AttributeUpdate], None],
        *,
        kinds: tuple[str, ...] = ("change", "periodic"),
        wait: bool = True,
        on_config: Callable[[ConfigUpdate], None] | None = None,
    ) -> Subscription:
        """Call `callback(update)` for every new value or error of `attributes` of `device`.

        Each attribute follows the first of `kinds` its server offers, else client polling (warned
        once per attribute). An initial update per attribute is delivered promptly (usually before
        this returns); errors arrive as updates with `error` set; after a server restart updates
        resume by themselves. Blocks at most `timeout` seconds (`wait=False`: not at all, the
        set-up goes on in the device's worker thread). Callbacks run on Tango's event
        thread or this device's worker thread: keep them short and do not close subscriptions
        from inside them. `on_config(ConfigUpdate)` is called when the configuration of one of
        `attributes` changes (Tango configuration events, or a restart with a new configuration);
        `attribute_types(device)` is kept up to date either way.
        """
        unknown = [k for k in kinds if k not in _EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; use some of {list(_EVENT_TYPES)}")
        channel = self._channel(device)
        sub = Subscription(channel, list(attributes), callback, tuple(kinds), on_config)
        new = channel.add(sub, tuple(kinds))
        if wait:
            channel.wait_setup(new, self.timeout)
        return sub

    def close(self) -> None:
        """Unsubscribe everything and stop the worker threads."""
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close(self.timeout)

    def __enter__(self) -> TangoSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
