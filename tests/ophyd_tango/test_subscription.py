"""The subscription engine: events, periodic events, client polling, errors and server restarts."""

import time

import numpy as np
import pytest
import tango

from ophyd_tango.core._private import call_event_callback_directly
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, TangoEventWarning, TangoSubscriber
from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import Collected
from tango_servers.stack.waiting import wait_until


class Recorder(Collected[AttributeUpdate]):
    """Collects the engine's updates, per attribute."""

    def __call__(self, update: AttributeUpdate) -> None:
        self.append(update)

    def of(self, attribute: str) -> list[AttributeUpdate]:
        return [u for u in self.snapshot() if u.attribute == attribute]

    def last(self, attribute: str) -> AttributeUpdate | None:
        updates = self.of(attribute)
        return updates[-1] if updates else None


@pytest.fixture
def subscriber():
    with TangoSubscriber(poll_period=0.1, timeout=2.0, liveness_period=0.2) as sub:
        yield sub


def test_change_events_initial_value_and_updates(zoo_trl, subscriber):
    rec = Recorder()
    sub = subscriber.subscribe(zoo_trl, ["TICKS"], rec)
    assert sub.modes() == {"TICKS": "change"}
    first = rec.last("ticks")  # reported as the server spells it
    assert first is not None and first.error is None
    assert first.device == "test/zoo/1"
    start = first.value
    proxy = subscriber.proxy(zoo_trl)
    proxy.Tick()
    proxy.Tick()
    wait_until(lambda: rec.last("ticks").value == start + 2, 5, message="two ticks")
    values = [u.value for u in rec.of("ticks")]
    assert values == sorted(values)
    assert all(u.timestamp > 1e9 for u in rec.of("ticks"))
    witness = Recorder()
    subscriber.subscribe(zoo_trl, ["ticks"], witness)
    sub.close()
    proxy.Tick()
    # The witness proves the tick's event reached this process; the closed subscription got none of it.
    wait_until(lambda: witness.last("ticks").value == start + 3, 5, message="the third tick")
    assert [u.value for u in rec.of("ticks")] == values


def test_periodic_events_from_server_polling(zoo_trl, subscriber):
    rec = Recorder()
    sub = subscriber.subscribe(zoo_trl, ["polled"], rec)
    assert sub.modes() == {"polled": "periodic"}
    wait_until(lambda: len(rec.of("polled")) >= 2, 5, message="two periodic events")


def test_client_polling_fallback_warns_once(zoo_trl, subscriber):
    rec = Recorder()
    with pytest.warns(TangoEventWarning, match="quiet: no Tango events"):
        sub = subscriber.subscribe(zoo_trl, ["quiet"], rec)
    assert sub.modes() == {"quiet": "polling"}
    assert rec.last("quiet").value == 42.0
    # Polling delivers changes only: the constant value is reported once, however often it is polled.
    proxy = subscriber.proxy(zoo_trl)
    reads = proxy.quiet_reads
    wait_until(lambda: proxy.quiet_reads >= reads + 3, 5, message="three more polls of quiet")
    assert len(rec.of("quiet")) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TangoEventWarning)
        subscriber.subscribe(zoo_trl, ["quiet"], Recorder())  # same feed: no second warning


def test_values_are_typed(zoo_trl, subscriber):
    rec = Recorder()
    names = ["enum_scalar", "state_scalar", "uint16_image", "encoded", "string_spectrum", "State"]
    subscriber.subscribe(zoo_trl, names, rec)
    wait_until(lambda: all(rec.last(n) for n in names), 5, message="initial values")
    assert type(rec.last("enum_scalar").value) is int
    assert rec.last("state_scalar").value == tango.DevState.MOVING
    assert rec.last("State").value == tango.DevState.ON
    image = rec.last("uint16_image").value
    assert isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint16
    fmt, payload = rec.last("encoded").value
    assert isinstance(fmt, str) and isinstance(payload, bytes)
    strings = rec.last("string_spectrum").value
    assert isinstance(strings, list) and all(isinstance(s, str) for s in strings)
    types = subscriber.attribute_types(zoo_trl)
    assert types["uint16_image"].shape == (4, 6)


def test_unknown_attribute_is_an_error_update(zoo_trl, subscriber):
    rec = Recorder()
    subscriber.subscribe(zoo_trl, ["no_such_thing"], rec)
    update = rec.last("no_such_thing")
    assert update.value is None and "no attribute 'no_such_thing'" in update.error


def test_second_subscriber_gets_current_value_at_once(zoo_trl, subscriber):
    first, second = Recorder(), Recorder()
    subscriber.subscribe(zoo_trl, ["ticks"], first)
    subscriber.subscribe(zoo_trl, ["ticks"], second)
    assert second.last("ticks").value == first.last("ticks").value


def test_unreachable_device_never_blocks(subscriber):
    rec = Recorder()
    start = time.monotonic()
    trl = f"tango://127.0.0.1:{free_port()}/test/nodb/nothing#dbase=no"
    subscriber.subscribe(trl, ["x"], rec)
    assert time.monotonic() - start < subscriber.timeout + 1.0
    wait_until(lambda: rec.last("x"), 5, message="an error update")
    assert rec.last("x").error and rec.last("x").value is None


def test_server_restart_resumes_updates(subscriber, nodb_server):
    server = nodb_server("zoo_server.py", "TypeZoo", "test/zoo/restart")
    rec = Recorder()
    with pytest.warns(TangoEventWarning):
        sub = subscriber.subscribe(server.trl, ["ticks", "quiet"], rec)
    assert sub.modes() == {"ticks": "change", "quiet": "polling"}
    server.stop()
    wait_until(lambda: rec.last("ticks").error and rec.last("quiet").error, 10, message="error updates")
    server.start()
    wait_until(lambda: rec.last("ticks").error is None, 15, message="ticks back after restart")
    wait_until(lambda: rec.last("quiet").error is None, 5, message="quiet back after restart")
    wait_until(lambda: sub.modes()["ticks"] == "change", 5, message="events again")
    subscriber.proxy(server.trl).Tick()
    wait_until(lambda: rec.last("ticks").value == 1, 5, message="a tick after the restart")


def test_events_reach_the_callback_directly_on_this_pytango(zoo_trl):
    """The engine skips PyTango's per-event wrapper through its event map; a PyTango upgrade that
    changes those internals fails here instead of silently costing ~25 us per event."""
    proxy = tango.DeviceProxy(zoo_trl)
    proxy.set_timeout_millis(3000)
    received = []
    callback = lambda event: received.append(event.attr_value.value if not event.err else None)  # noqa: E731
    event_id = proxy.subscribe_event("ticks", tango.EventType.CHANGE_EVENT, callback)
    try:
        assert call_event_callback_directly(proxy, event_id, callback)
        start = proxy.ticks
        proxy.Tick()
        wait_until(lambda: start + 1 in received, 5, message="the tick through the direct path")
    finally:
        proxy.unsubscribe_event(event_id)


def test_configuration_changes_are_updates_too(subscriber, nodb_server):
    server = nodb_server("zoo_server.py", "TypeZoo", "test/zoo/config")
    configs: list[ConfigUpdate] = []
    values = Recorder()
    sub = subscriber.subscribe(server.trl, ["limited", "ticks"], values, on_config=configs.append)
    proxy = subscriber.proxy(server.trl)
    config = proxy.get_attribute_config("limited")
    config.unit = "um"
    proxy.set_attribute_config(config)
    wait_until(lambda: configs, 10, message="a configuration update")
    assert [(u.device, u.type.name, u.type.unit) for u in configs] == [("test/zoo/config", "limited", "um")]
    assert subscriber.attribute_types(server.trl)["limited"].unit == "um"
    # a restart brings the server's own configuration back: one more update, no Tango call asked
    server.stop()
    server.start()
    wait_until(lambda: configs[-1].type.unit == "mm", 20, message="the configuration after the restart")
    assert subscriber.attribute_types(server.trl)["limited"].unit == "mm"
    assert {u.type.name for u in configs} == {"limited"}
    sub.close()
    config.unit = "nm"
    subscriber.proxy(server.trl).set_attribute_config(config)
    wait_until(lambda: subscriber.attribute_types(server.trl, refresh=True)["limited"].unit == "nm", 5)
    assert configs[-1].type.unit == "mm"  # a closed subscription hears nothing more
