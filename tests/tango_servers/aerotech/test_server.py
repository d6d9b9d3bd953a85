"""The Automation1 server on the shipped stack (real database, launcher, event system)."""

import json
import math
import time
from importlib import resources

import numpy as np
import pytest
import tango
from tango import AttrQuality, DevState

from ophyd_tango.core.subscription import TangoSubscriber
from tango_servers.aerotech.profile import plan_move
from tango_servers.stack.testing import Collected
from tango_servers.stack.waiting import wait_until

CTRL, X, Y, OMEGA = "sim/aerotech/ctrl", "sim/aerotech/x", "sim/aerotech/y", "sim/aerotech/omega"
TASK_COMPLETE, TASK_RUNNING, TASK_IDLE = 3, 1, 0


class Recorder(Collected):
    """Change events of one attribute as (value, quality, timestamp); errors are kept apart."""

    def __init__(self, proxy: tango.DeviceProxy, attribute: str):
        super().__init__()
        self.proxy = proxy
        self.errors: Collected[str] = Collected()
        self._id = proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._push)

    def _push(self, event: tango.EventData) -> None:
        if event.err:
            self.errors.append(str(event.errors[0].desc))
        else:
            v = event.attr_value
            self.append((v.value, v.quality, v.time.totime()))

    def values(self) -> list:
        return [item[0] for item in self.snapshot()]

    def close(self) -> None:
        self.proxy.unsubscribe_event(self._id)


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def record(proxy: tango.DeviceProxy, attribute: str) -> Recorder:
        made.append(Recorder(proxy, attribute))
        return made[-1]

    yield record
    for r in made:
        r.close()


def wait_at_rest(proxy: tango.DeviceProxy, timeout: float = 30.0) -> None:
    wait_until(lambda: proxy.state() != DevState.MOVING, timeout, message=f"{proxy.dev_name()} to stop")


def move_to(proxy: tango.DeviceProxy, target: float) -> None:
    proxy.write_attribute("position", target)
    wait_at_rest(proxy)


@pytest.fixture
def axis(stack):
    """A factory of axis proxies that are put back to a clean, enabled state afterwards."""
    used: list[tango.DeviceProxy] = []
    ctrl = stack.proxy(CTRL)

    def get(name: str) -> tango.DeviceProxy:
        proxy = stack.proxy(name)
        wait_at_rest(proxy)
        used.append(proxy)
        return proxy

    yield get
    ctrl.AbortProgram()
    ctrl.PsoDisarm()
    for proxy in used:
        proxy.Stop()
        wait_at_rest(proxy)
        proxy.FaultAck()
        proxy.Enable()
        low, high = (-3600.0, 3600.0) if proxy.get_attribute_config("position").unit == "deg" else (-50.0, 50.0)
        proxy.soft_limit_low, proxy.soft_limit_high = low, high
        proxy.velocity = 30.0 if low == -3600.0 else 5.0
        proxy.acceleration = 720.0 if low == -3600.0 else 100.0


def test_attributes_declare_units_limits_and_roles(stack, axis):
    x, omega = axis(X), axis(OMEGA)
    config = x.get_attribute_config("position")
    assert (config.unit, config.format, config.min_value, config.max_value) == ("mm", "%.4f", "-50.0", "50.0")
    assert x.get_attribute_config("velocity").unit == "mm/s"
    assert x.get_attribute_config("acceleration").unit == "mm/s^2"
    assert omega.get_attribute_config("position").unit == "deg"
    assert omega.get_attribute_config("velocity").max_value == "720.0"
    x.soft_limit_high = 20.0
    assert x.get_attribute_config("position").max_value == "20.0"
    roles = tango.Database().get_class_property("Automation1Axis", ["bluesky_roles"])["bluesky_roles"]
    assert {"readback=position", "setpoint=position", "moving_state=MOVING", "kind=motor"} <= set(roles)
    ctrl = stack.proxy(CTRL)
    names = {a.lower() for a in ctrl.get_attribute_list()}
    assert {"captured_positions_x", "captured_positions_omega", "captured_timestamps", "captured_count"} <= names
    assert list(ctrl.get_attribute_config("task_state").enum_labels) == ["Idle", "Running", "Error", "Complete"]
    assert ctrl.get_attribute_config("captured_positions_omega").unit == "deg"


def test_move_follows_the_trapezoid_with_events_at_50_hz_and_a_final_event(axis, recorders):
    x = axis(X)
    x.velocity, x.acceleration = 5.0, 100.0
    move_to(x, 0.0)
    positions, states = recorders(x, "position"), recorders(x, "State")
    wait_until(lambda: positions.values() and states.values(), 3, message="initial events")
    x.write_attribute("position", 10.0)
    assert x.state() == DevState.MOVING  # at once, before any event
    wait_at_rest(x)
    wait_until(lambda: positions.snapshot()[-1][1] == AttrQuality.ATTR_VALID, 3, message="final event")
    events = positions.snapshot()
    moving = [e for e in events if e[1] == AttrQuality.ATTR_CHANGING]
    final = events[-1]
    assert final[0] == 10.0 and x.position == 10.0
    # timestamps are simulated time: the whole profile can be checked against the exact trapezoid
    # (Tango carries timestamps in microseconds: 5 um of travel at 5 mm/s)
    duration = 10 / 5 + 5 / 100
    plan = plan_move(final[2] - duration, 0.0, 0.0, 10.0, 5.0, 100.0)
    assert plan is not None
    np.testing.assert_allclose([e[0] for e in moving], plan.positions(np.array([e[2] for e in moving])), atol=2e-5)
    assert moving[0][2] - plan.start_time < 0.1
    assert len(moving) / duration >= 50
    assert states.values()[-2:] == [DevState.MOVING, DevState.STANDBY]
    assert x.move_progress == 1.0 and x.at_target and x.position_target == 10.0


def test_bad_moves_are_rejected_with_the_reason_and_nothing_moves(axis, recorders):
    x = axis(X)
    move_to(x, 1.0)
    x.soft_limit_high = 20.0
    states = recorders(x, "State")
    rejected = [
        (lambda: x.write_attribute("position", 25.0), "API_WAttrOutsideLimit", "maximum authorized"),
        (lambda: x.MoveRelative(30.0), "SoftLimitHigh", "above the soft limit high 20 mm of axis X"),
        (lambda: x.MoveRelative(-60.0), "SoftLimitLow", "below the soft limit low -50 mm of axis X"),
        (lambda: x.write_attribute("position", math.nan), "API_WAttrOutsideLimit", "NaN or INF"),
        (lambda: setattr(x, "velocity", 1000.0), "API_WAttrOutsideLimit", "maximum authorized"),
    ]
    for call, reason, words in rejected:
        with pytest.raises(tango.DevFailed) as exc:
            call()
        assert exc.value.args[0].reason == reason
        assert words in exc.value.args[0].desc
    x.Disable()
    assert x.state() == DevState.DISABLE
    with pytest.raises(tango.DevFailed) as exc:
        x.write_attribute("position", 2.0)
    assert exc.value.args[0].reason == "AxisDisabled" and "Enable it" in exc.value.args[0].desc
    x.Enable()
    assert x.position == 1.0
    assert DevState.MOVING not in states.values()


def test_a_faulted_axis_refuses_moves_until_acknowledged(axis):
    x = axis(X)
    move_to(x, 0.0)
    x.write_attribute("position", 20.0)
    wait_until(lambda: x.position > 2.0, 5, message="X past 2 mm")
    x.soft_limit_high = 10.0  # the running move now targets beyond the limit: abort with a fault
    wait_until(lambda: x.state() == DevState.FAULT and x.actual_velocity == 0.0, 3, message="X faulted at rest")
    assert x.faults == "SoftLimitHigh"
    where = x.position
    with pytest.raises(tango.DevFailed) as exc:
        x.write_attribute("position", 0.0)
    assert exc.value.args[0].reason == "AxisFaulted" and "FaultAck" in exc.value.args[0].desc
    assert x.position == where and x.state() == DevState.FAULT
    x.FaultAck()
    assert x.state() == DevState.STANDBY and x.faults == ""


def test_pso_fly_over_10_mm_gives_exactly_1000_pulse_events_and_captured_sets(stack, axis, recorders):
    x, y = axis(X), axis(Y)
    x.velocity, x.acceleration = 5.0, 100.0
    move_to(x, 0.0)
    move_to(y, 2.5)
    ctrl = stack.proxy(CTRL)
    ctrl.pso_axis, ctrl.pso_distance = "X", 0.01
    ctrl.pso_window_low, ctrl.pso_window_high = -1e9, 1e9
    pulses, counts = recorders(ctrl, "pso_pulse_count"), recorders(ctrl, "captured_count")
    wait_until(lambda: pulses.values(), 3, message="initial pulse count event")
    ctrl.PsoArm()
    x.write_attribute("position", 10.0)
    wait_at_rest(x)
    wait_until(lambda: pulses.values()[-1] == 1000 and counts.values()[-1] == 1000, 5, message="1000 pulses")
    ctrl.PsoDisarm()
    values = pulses.values()
    after_arm = values[len(values) - 1 - values[::-1].index(0) + 1 :]
    assert after_arm == list(range(1, 1001))  # one change event per pulse, none lost, none doubled
    assert ctrl.pso_pulse_count == 1000 and ctrl.captured_count == 1000
    xs, ys = ctrl.captured_positions_x, ctrl.captured_positions_y
    stamps = ctrl.captured_timestamps
    assert len(xs) == len(ys) == len(stamps) == 1000
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(np.diff(xs), 0.01, atol=1e-9)
    assert xs[0] == pytest.approx(0.01, abs=1e-9) and xs[-1] == pytest.approx(10.0, abs=1e-9)
    np.testing.assert_allclose(ys, 2.5)
    # pulse event timestamps are the latch times
    pulse_stamps = [t for v, _, t in pulses.snapshot() if isinstance(v, int) and v >= 1][-1000:]
    np.testing.assert_allclose(pulse_stamps, stamps, atol=2e-6)  # Tango timestamps are in microseconds


def test_program_runs_to_completion_with_progress_events(stack, axis, recorders):
    x, y = axis(X), axis(Y)
    ctrl = stack.proxy(CTRL)
    progress, states = recorders(ctrl, "task_progress"), recorders(ctrl, "task_state")
    ctrl.RunProgram(
        """
        var $pitch = 0.5
        MoveAbsolute([X, Y], [0, 0], [10, 10])
        WaitForInPosition([X, Y])
        for $i = 1 to 4
            MoveIncremental(X, $pitch)
            Dwell(0.05)
        end
        MoveLinear([X, Y], [1, 1], 4)
        """
    )
    assert ctrl.task_state == TASK_RUNNING and ctrl.state() == DevState.RUNNING
    wait_until(lambda: ctrl.task_state == TASK_COMPLETE, 20, message="the program to complete")
    wait_until(lambda: progress.values()[-1] == 1.0, 3, message="the final progress event")
    values = progress.values()
    assert len([v for v in values if 0 < v < 1]) >= 5
    assert values[values.index(0.0) :] == sorted(values[values.index(0.0) :])
    assert TASK_RUNNING in states.values() and states.values()[-1] == TASK_COMPLETE
    assert x.position == 1.0 and y.position == 1.0
    assert ctrl.task_progress == 1.0


def test_bad_program_names_its_line_and_nothing_moves(stack, axis):
    x = axis(X)
    ctrl = stack.proxy(CTRL)
    before = x.position
    with pytest.raises(tango.DevFailed) as exc:
        ctrl.RunProgram("MoveAbsolute(X, 1)\nDwell(0.1)\nMoveAbsolute(X, 2, )\n")
    assert exc.value.args[0].reason == "ProgramSyntaxError"
    assert exc.value.args[0].desc.startswith("line 3: ")
    with pytest.raises(tango.DevFailed) as exc:
        ctrl.RunProgram("var $a = 10\nrepeat 3\n  MoveIncremental(X, $a * 3)\nend\n")
    assert exc.value.args[0].reason == "ProgramRejected"
    assert exc.value.args[0].desc.startswith("line 3: ") and "soft limit high" in exc.value.args[0].desc
    assert x.position == before and x.state() != DevState.MOVING
    assert ctrl.task_state != TASK_RUNNING


def test_abort_program_stops_motion_within_100_ms(stack, axis, recorders):
    x = axis(X)
    x.acceleration = 100.0
    move_to(x, -40.0)
    ctrl = stack.proxy(CTRL)
    positions, tasks = recorders(x, "position"), recorders(ctrl, "task_state")
    ctrl.RunProgram("MoveAbsolute(X, 40, 20)\nDwell(1)")
    wait_until(lambda: abs(x.actual_velocity - 20.0) < 1e-9, 5, message="X at cruise speed")
    before = time.time()
    ctrl.AbortProgram()
    wait_at_rest(x)
    wait_until(lambda: positions.snapshot()[-1][1] == AttrQuality.ATTR_VALID, 3, message="final event")
    wait_until(lambda: tasks.values()[-1] == TASK_IDLE, 3, message="the Idle task event")
    stopped_at = positions.snapshot()[-1][2]  # simulated time at which X came to rest
    aborted_at = tasks.snapshot()[-1][2]  # simulated time at which the server aborted
    assert 0 < stopped_at - aborted_at <= 0.1  # 20 mm/s at the abort deceleration: 20 ms
    assert stopped_at - before < 1.0  # and the command itself was prompt
    assert ctrl.task_state == TASK_IDLE and "aborted" in ctrl.task_message
    assert x.position < 40.0


def automation1_only() -> dict:
    shipped = json.loads(resources.files("tango_servers.stack").joinpath("default_config.json").read_text())
    return {"servers": {"Automation1": shipped["servers"]["Automation1"]}}


def test_killing_the_server_mid_move_restarts_in_a_consistent_state(make_stack):
    running = make_stack(automation1_only(), redis=False, bridges=False)
    x = running.proxy(X)
    x.write_attribute("position", 40.0)
    wait_until(lambda: x.position > 3.0, 10, message="X moving past 3 mm")
    last = x.position
    pid = running.kill_server("Automation1/sim")
    running.wait_server_back("Automation1/sim", pid)
    x = running.proxy(X)
    wait_until(lambda: x.state() is not None, 10, message="X answering")
    assert x.state() == DevState.STANDBY
    restored = x.position
    # saved at 10 Hz while moving: the last save is ~0.1 s (0.5 mm at 5 mm/s) behind the last read,
    # plus scheduling slack on a loaded machine; ahead of it by no more than the kill latency
    assert last - 2.0 <= restored <= last + 2.0
    assert x.position_target == restored and x.at_target and not x.faults
    assert "stopped during a move" in x.status()
    x.write_attribute("position", restored - 1.0)  # and it moves again
    wait_at_rest(x)
    assert x.position == pytest.approx(restored - 1.0)


def test_misconfigured_devices_are_in_fault_with_a_reason_and_init_keeps_the_simulation(make_stack):
    config = automation1_only()
    devices = config["servers"]["Automation1"]["sim"]
    devices["Automation1Axis"]["sim/aerotech/q"] = {"properties": {"controller": [CTRL], "axis": ["Q"]}}
    devices["Automation1Controller"]["sim/aerotech/other"] = {"properties": {"backend": ["hardware"]}}
    running = make_stack(config, redis=False, bridges=False)
    q, other = running.proxy("sim/aerotech/q"), running.proxy("sim/aerotech/other")
    assert q.state() == DevState.FAULT and "its axes are X, Y, Z, OMEGA" in q.status()
    with pytest.raises(tango.DevFailed) as exc:
        q.read_attribute("position")
    assert any("has no axis Q" in error.desc for error in exc.value.args)
    assert other.state() == DevState.FAULT and "unknown backend 'hardware'" in other.status()
    x, ctrl = running.proxy(X), running.proxy(CTRL)
    move_to(x, 2.0)
    ctrl.Init()  # re-initialising the controller keeps the running simulation and its axes
    x.write_attribute("position", 3.0)
    wait_at_rest(x)
    assert x.position == 3.0 and ctrl.state() == DevState.ON


def test_pulses_after_psoarm_reach_a_follower_on_a_slowed_clock(make_stack):
    """The reset to 0 is stamped on the simulated clock, as the pulses are: a follower that drops
    updates older than the last one (the subscription engine) still sees every pulse."""
    config = automation1_only()
    controller = config["servers"]["Automation1"]["sim"]["Automation1Controller"][CTRL]
    controller.setdefault("properties", {})["time_scale"] = ["0.5"]  # simulated time lags the wall clock
    running = make_stack(config, redis=False, bridges=False)
    x, ctrl = running.proxy(X), running.proxy(CTRL)
    move_to(x, 0.0)
    ctrl.pso_axis, ctrl.pso_distance = "X", 0.01
    ctrl.pso_window_low, ctrl.pso_window_high = -1e9, 1e9
    seen: list[int] = []
    with TangoSubscriber(timeout=5.0) as subscriber:
        subscriber.subscribe(
            running.trl(CTRL),
            ["pso_pulse_count"],
            lambda update: seen.append(update.value) if update.error is None else None,
        )
        wait_until(lambda: seen, 5, message="the initial pulse count")
        ctrl.PsoArm()
        x.write_attribute("position", 1.0)
        wait_at_rest(x)
        wait_until(lambda: seen[-1:] == [100], 5, message=lambda: f"100 pulses followed, got {seen[-3:]}")
    assert seen[len(seen) - 1 - seen[::-1].index(0) + 1 :] == list(range(1, 101))
