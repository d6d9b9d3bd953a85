"""pso_pulse_count is a DevLong64: counts past 2**31 reach clients, as values and as events."""

import threading
from pathlib import Path

import tango

from ophyd_tango import TangoDevice
from tango_servers.stack.testing import shipped_servers
from tango_servers.stack.waiting import wait_until

HERE = Path(__file__).parent
OFFSET = 2**31 + 10  # counter_past_2_31_server.py
CTRL, X = "sim/aerotech/ctrl", "sim/aerotech/x"


def test_pulse_count_past_2_31_reaches_clients(make_stack):
    config = {"servers": {"Automation1Offset": shipped_servers("Automation1")["Automation1"]}}
    server = {"Automation1Offset": f"{HERE / 'counter_past_2_31_server.py'}:main"}
    stack = make_stack(config, extra_servers=server, redis=False, bridges=False)
    ctrl, x = stack.proxy(CTRL), stack.proxy(X)
    assert ctrl.get_attribute_config("pso_pulse_count").data_type == tango.CmdArgType.DevLong64
    seen: list[int] = []
    lock = threading.Lock()

    def on_event(event: tango.EventData) -> None:
        if not event.err:
            with lock:
                seen.append(event.attr_value.value)

    subscription = ctrl.subscribe_event("pso_pulse_count", tango.EventType.CHANGE_EVENT, on_event)
    try:
        ctrl.write_attribute("pso_axis", "X")
        ctrl.write_attribute("pso_distance", 0.1)
        ctrl.write_attribute("pso_window_low", -1000.0)
        ctrl.write_attribute("pso_window_high", 1000.0)
        ctrl.PsoArm()
        x.write_attribute("position", x.position + 0.5)
        wait_until(lambda: ctrl.pso_pulse_count == OFFSET + 5, 30, message="5 pulses past 2**31")
        wait_until(lambda: seen and seen[-1] == OFFSET + 5, 10, message="the last pulse event")
    finally:
        ctrl.unsubscribe_event(subscription)
        ctrl.PsoDisarm()
    assert [v for v in seen if v > OFFSET] == [OFFSET + k for k in range(1, 6)]
    assert TangoDevice(stack.trl(CTRL), name="ctrl").signal("pso_pulse_count").get() == OFFSET + 5
