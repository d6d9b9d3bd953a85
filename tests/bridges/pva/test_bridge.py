"""The PVA bridge on a real stack, checked from a real p4p client.

The stack runs the test-only BridgeTarget server (target_server.py: one attribute of every kind)
and the PvaBridge exporting it; tests change Tango values through commands and look at the PVs.
"""

import numpy as np
import pytest
import tango
from p4p.client.thread import RemoteError

from tango_servers.stack.testing import Collected
from tango_servers.stack.waiting import wait_until

PREFIX = "TEST:TARGET:1:"
BRIDGE = "sys/bridge/pva"
FRAME_SHAPE = (48, 64)
TIMEOUT = 10.0  # seconds for one PVA get or put; generous, the machine may be loaded


class Recorder(Collected):
    """Collects the updates of one PV monitor."""

    def __init__(self, context, name):
        super().__init__()
        self._subscription = context.monitor(name, self.append, notify_disconnect=True)

    @property
    def values(self):
        return self.snapshot()

    def index(self, value):
        """Position of `value` (by identity) among the updates so far."""
        return next(i for i, v in enumerate(self.snapshot()) if v is value)

    def close(self):
        self._subscription.close()


@pytest.fixture
def monitor(pva):
    recorders = []

    def make(attribute):
        recorder = Recorder(pva, PREFIX + attribute)
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.close()


def expected_frame(number):
    rows, cols = np.indices(FRAME_SHAPE)
    return ((rows * FRAME_SHAPE[1] + cols + number) % 4096).astype(np.uint16)


def test_every_attribute_is_published_with_its_normative_type(pva, bridge_stack):
    expected = {
        "temperature": "epics:nt/NTScalar:1.0",
        "counter": "epics:nt/NTScalar:1.0",
        "enabled": "epics:nt/NTScalar:1.0",
        "label": "epics:nt/NTScalar:1.0",
        "mode": "epics:nt/NTEnum:1.0",
        "State": "epics:nt/NTEnum:1.0",
        "Status": "epics:nt/NTScalar:1.0",
        "profile": "epics:nt/NTScalarArray:1.0",
        "frame": "epics:nt/NTNDArray:1.0",
        "encoded_frame": "epics:nt/NTNDArray:1.0",
        "jpeg_frame": "epics:nt/NTNDArray:1.0",
    }
    names = [PREFIX + attribute for attribute in expected]
    values = pva.get(names, timeout=TIMEOUT)
    got = {name.removeprefix(PREFIX): value.raw.getID() for name, value in zip(names, values, strict=True)}
    assert got == expected
    published = set(bridge_stack.proxy(BRIDGE).pv_names)
    assert set(names) <= published
    assert not any(name.startswith("SYS:BRIDGE:PVA") for name in published)


def test_numeric_scalar_carries_units_limits_precision_and_alarm_limits(pva):
    raw = pva.get(PREFIX + "temperature", timeout=TIMEOUT).raw
    assert raw.display.units == "K"
    assert raw.display.precision == 3
    assert raw.display.description == "Sample temperature"
    assert (raw.display.limitLow, raw.display.limitHigh) == (0.0, 500.0)
    assert (raw.control.limitLow, raw.control.limitHigh) == (0.0, 500.0)
    alarm = raw.valueAlarm
    assert alarm.active
    assert (alarm.lowAlarmLimit, alarm.lowWarningLimit, alarm.highWarningLimit, alarm.highAlarmLimit) == (
        10.0,
        20.0,
        350.0,
        400.0,
    )
    assert pva.get(PREFIX + "counter", timeout=TIMEOUT).raw.display.precision == 0


def test_values_follow_tango_change_events_with_tango_timestamps(pva, target, monitor):
    counter = monitor("counter")
    start = int(target.counter)
    for _ in range(5):
        target.Bump()
    last = counter.wait_for(lambda v: int(v) == start + 5, "counter to reach start + 5 on PVA")
    seen = [int(v) for v in counter.values if not isinstance(v, Exception)]
    assert seen[-5:] == list(range(start + 1, start + 6))  # every change, in order
    tango_time = target.read_attribute("counter").time.totime()
    assert abs(last.timestamp - tango_time) < 1.0
    assert last.severity == 0


@pytest.mark.parametrize(
    ("quality", "severity"),
    [("WARNING", 1), ("ALARM", 2), ("INVALID", 3), ("CHANGING", 0), ("VALID", 0)],
)
def test_tango_quality_becomes_alarm_severity_with_a_message(pva, target, monitor, quality, severity):
    temperature = monitor("temperature")
    temperature.wait_for(lambda v: True, "the first temperature update")
    temperature.clear()
    target.SetTemperatureQuality(quality)
    value = temperature.wait_for(
        lambda v: v.severity == severity and (quality in v.raw.alarm.message or quality == "VALID"),
        f"temperature severity {severity} for quality {quality}",
    )
    if quality == "VALID":
        assert value.raw.alarm.message == ""
    target.SetTemperatureQuality("VALID")


def test_enum_and_state_are_published_with_their_labels(pva, target, monitor):
    mode = pva.get(PREFIX + "mode", timeout=TIMEOUT)
    assert list(mode.raw.value.choices) == ["IDLE", "ACQUIRING", "FAULT"]
    state = monitor("State")
    target.SetStateTo("MOVING")
    moving = state.wait_for(lambda v: v.raw.value.choices[int(v)] == "MOVING", "State MOVING on PVA")
    assert "ON" in moving.raw.value.choices and "FAULT" in moving.raw.value.choices
    target.SetStateTo("ON")
    state.wait_for(lambda v: v.raw.value.choices[int(v)] == "ON", "State ON on PVA")


def test_string_and_spectrum(pva, target, monitor):
    profile = monitor("profile")
    target.SetProfile([1.0, 2.5, 4.0])
    got = profile.wait_for(lambda v: len(v) == 3, "profile of length 3")
    np.testing.assert_array_equal(got, [1.0, 2.5, 4.0])
    assert got.raw.display.units == "counts"
    assert pva.get(PREFIX + "label", timeout=TIMEOUT) == target.label


def test_images_arrive_with_shape_pixels_and_counting_unique_id(pva, target, monitor):
    frames = monitor("frame")
    encoded = monitor("encoded_frame")
    jpeg = monitor("jpeg_frame")
    frames.wait_for(lambda v: True, "the first frame update")
    first_id = frames.latest().raw.uniqueId
    numbers = [target.NewFrame() for _ in range(3)]
    last = frames.wait_for(lambda v: v.raw.uniqueId == first_id + 3, "three new frames")
    assert last.shape == FRAME_SHAPE
    np.testing.assert_array_equal(last, expected_frame(numbers[-1]))
    assert [d.size for d in last.raw.dimension] == [FRAME_SHAPE[1], FRAME_SHAPE[0]]
    assert abs(last.raw.dataTimeStamp.secondsPastEpoch - target.read_attribute("frame").time.tv_sec) <= 1
    gray16 = encoded.wait_for(lambda v: np.array_equal(v, expected_frame(numbers[-1])), "GRAY16 frame decoded")
    assert gray16.dtype == np.uint16 and gray16.shape == FRAME_SHAPE
    picture = jpeg.wait_for(lambda v: v.shape == FRAME_SHAPE and v.raw.uniqueId >= 3, "JPEG frame decoded")
    assert picture.dtype == np.uint8


def test_puts_are_refused_unless_allowed(pva, target, bridge_stack):
    errors_before = bridge_stack.proxy(BRIDGE).error_count
    with pytest.raises(RemoteError, match=r"read-only.*put_allowlist"):
        pva.put(PREFIX + "label", "changed", timeout=TIMEOUT)
    assert target.label == "hello"
    with pytest.raises(RemoteError, match="not writable"):  # allowed, but a read-only Tango attribute
        pva.put(PREFIX + "State", 0, timeout=TIMEOUT)
    assert bridge_stack.proxy(BRIDGE).error_count == errors_before  # refusals by configuration are not errors


def test_allowed_puts_reach_tango_and_failures_reach_the_client(pva, target, bridge_stack):
    pva.put(PREFIX + "temperature", 123.25, timeout=TIMEOUT)
    assert target.temperature == 123.25
    wait_until(lambda: pva.get(PREFIX + "temperature", timeout=2.0) == 123.25, 5.0, message="PV shows the put")
    pva.put(PREFIX + "mode", "ACQUIRING", timeout=TIMEOUT)
    assert target.mode == 1
    errors_before = bridge_stack.proxy(BRIDGE).error_count
    with pytest.raises(RemoteError, match="above the maximum"):  # Tango's own range check
        pva.put(PREFIX + "temperature", 900.0, timeout=TIMEOUT)
    with pytest.raises(RemoteError, match="out of range"):  # the bridge's type check
        pva.put(PREFIX + "mode", 7, timeout=TIMEOUT)
    assert target.temperature == 123.25 and target.mode == 1
    bridge = bridge_stack.proxy(BRIDGE)
    assert bridge.error_count == errors_before + 2
    assert "mode" in bridge.last_error


def test_bridge_status_attributes(pva, target, bridge_stack):
    bridge = bridge_stack.proxy(BRIDGE)
    assert bridge.pv_count == len(target.get_attribute_list())
    assert bridge.state() in (tango.DevState.ON, tango.DevState.ALARM)
    assert f"Serving {bridge.pv_count} PVs" in bridge.status()
    for _ in range(20):
        target.Bump()
    wait_until(lambda: bridge.update_rate > 0, 10.0, message="a non-zero update rate")
    assert bridge.update_count >= 20
    assert bridge.actual_server_port == int(bridge_stack.pva["EPICS_PVA_SERVER_PORT"])
    assert bridge.waiting_devices is None or list(bridge.waiting_devices) == []


def test_device_restart_turns_pvs_invalid_then_recovers(make_bridge_stack, pva_client_for):
    running = make_bridge_stack()
    context = pva_client_for(running)
    recorder = Recorder(context, PREFIX + "counter")
    try:
        valid = recorder.wait_for(lambda v: v.severity == 0, "counter valid before the restart")
        old_pid = running.kill_server("BridgeTarget/test")
        # after the valid value: a monitor that connected early also saw the PV's opening INVALID
        gone = recorder.wait_for(
            lambda v: v.severity == 3, "counter INVALID after the kill", timeout=20.0, since=recorder.index(valid) + 1
        )
        assert "disconnected" in gone.raw.alarm.message
        bridge = running.proxy(BRIDGE)
        wait_until(lambda: bridge.disconnected_pv_count > 0, 10.0, message="the bridge to count INVALID PVs")
        assert bridge.state() == tango.DevState.ALARM
        running.wait_server_back("BridgeTarget/test", old_pid)
        after_gone = recorder.index(gone) + 1
        back = recorder.wait_for(lambda v: v.severity == 0, "counter valid again", timeout=30.0, since=after_gone)
        assert back.raw.alarm.message == ""
        running.proxy("test/target/1").Bump()
        recorder.wait_for(lambda v: int(v) == 1, "updates flow again after the restart", timeout=10.0, since=after_gone)
        wait_until(lambda: bridge.disconnected_pv_count == 0, 30.0, message="every PV valid again")
        assert bridge.error_count > 0
    finally:
        recorder.close()


def test_configuration_changes_reach_the_pvs(make_bridge_stack, pva_client_for):
    running = make_bridge_stack()
    context = pva_client_for(running)
    target, bridge = running.proxy("test/target/1"), running.proxy(BRIDGE)
    level = context.get(PREFIX + "level", timeout=TIMEOUT)
    assert list(level.raw.value.choices) == ["LOW", "HIGH"]
    # same PV type, new metadata: enum labels (as an OAV zoom reload) and a unit
    target.RelabelLevel(["IN", "OUT", "PARKED"])
    target.SetTemperatureUnit("degC")
    bridge.Rescan()
    wait_until(
        lambda: list(context.get(PREFIX + "level", timeout=TIMEOUT).raw.value.choices) == ["IN", "OUT", "PARKED"],
        30.0,
        message="the new enum labels on PVA",
    )
    wait_until(
        lambda: context.get(PREFIX + "temperature", timeout=TIMEOUT).raw.display.units == "degC",
        30.0,
        message="the new unit on PVA",
    )
    # a new Tango type: the PV is re-created with the new normative type and the current value
    target.RetypeLevel()
    bridge.Rescan()
    retyped = wait_until(
        lambda: (v := context.get(PREFIX + "level", timeout=TIMEOUT)) == "as text" and v,
        30.0,
        message="level as a string PV",
    )
    assert retyped.raw.getID() == "epics:nt/NTScalar:1.0" and retyped.severity == 0


def test_init_from_jive_restarts_the_bridge_and_clients_reconnect(make_bridge_stack, pva_client_for):
    running = make_bridge_stack(allowlist=[])
    context = pva_client_for(running)
    recorder = Recorder(context, PREFIX + "counter")
    try:
        recorder.wait_for(lambda v: v.severity == 0, "counter valid before Init")
        bridge = running.proxy(BRIDGE)
        bridge.put_property({"put_allowlist": ["test/target/*/temperature"]})
        bridge.Init()  # what Jive's "Init" does: new properties, same ports
        mark = len(recorder.values)
        running.proxy("test/target/1").Bump()
        recorder.wait_for(lambda v: int(v) == 1, "counter updates after Init", timeout=30.0, since=mark)
        context.put(PREFIX + "temperature", 42.0, timeout=TIMEOUT)  # the new allowlist applies
        assert running.proxy("test/target/1").temperature == 42.0
        wait_until(lambda: bridge.state() == tango.DevState.ON, 30.0, message="the bridge ON after Init")
    finally:
        recorder.close()
