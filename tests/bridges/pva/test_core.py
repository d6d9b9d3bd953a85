"""The bridges' shared core (`bridges.core`) with a recording sink, against the PVA test stack."""

import threading

import pytest

from bridges.core import BridgeCore, Selection
from ophyd_tango.core.subscription import AttributeUpdate, ConfigUpdate, TangoSubscriber
from ophyd_tango.core.types import AttributeType
from tango_servers.stack.waiting import wait_until

from .conftest import TARGET

BRIDGE = "sys/bridge/pva"


class RecordingSink:
    """Takes every attribute offered except `refuse`; records what reaches it."""

    def __init__(self, refuse: str = ""):
        self.refuse = refuse
        self.offered: dict[str, list[str]] = {}
        self.updates: list[AttributeUpdate] = []
        self.configs: list[ConfigUpdate] = []
        self.lock = threading.Lock()

    def add_attributes(self, device: str, types: list[AttributeType]) -> list[str]:
        self.offered.setdefault(device, []).extend(t.name for t in types)
        return [t.name for t in types if t.name != self.refuse]

    def on_update(self, update: AttributeUpdate) -> None:
        with self.lock:
            self.updates.append(update)

    def on_config(self, update: ConfigUpdate) -> None:
        self.configs.append(update)


@pytest.fixture
def core_for(bridge_stack, monkeypatch):
    monkeypatch.setenv("TANGO_HOST", bridge_stack.tango_host)
    cores = []
    subscriber = TangoSubscriber(timeout=3.0)

    def make(sink: RecordingSink, selection: Selection) -> BridgeCore:
        core = BridgeCore(sink, subscriber, selection, own_device=BRIDGE, retry_period=0.2, rescan_period=0.5)
        cores.append(core.start())
        assert core.wait_first_scan(30)
        return core

    yield make
    for core in cores:
        core.stop()
    subscriber.close()


def test_core_follows_the_selection_and_never_its_own_device(core_for, target):
    sink = RecordingSink(refuse="counter")
    selection = Selection(
        devices=("test/*/*", "sys/bridge/*"),
        attributes=("temperature", "counter", "mode", f"{BRIDGE}/*"),
        exclude_attributes=("mode",),
    )
    core = core_for(sink, selection)
    assert sink.offered == {TARGET: ["temperature", "counter"]}  # filters applied, own device skipped
    assert core.followed_devices == [TARGET] and core.attribute_count == 1  # "counter" refused by the sink
    wait_until(lambda: any(u.attribute == "temperature" for u in sink.updates), 10, message="a temperature update")
    assert {u.attribute for u in sink.updates} == {"temperature"}
    assert core.update_count == len(sink.updates) and core.waiting_devices == {}
