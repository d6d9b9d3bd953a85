"""Issue 20, Aerotech: no value a client sends wedges the Automation1 server (real stack, real server)."""

import resource
import threading

import pytest
import tango
from tango import DevState

from tango_servers.aerotech.backend import PulseEvent, TaskState
from tango_servers.aerotech.limits import MAX_CAPTURE, MAX_PULSES_PER_EVENT
from tango_servers.aerotech.program import MAX_LINES
from tango_servers.aerotech.sim import Automation1Sim
from tango_servers.stack.waiting import wait_until

CTRL, X = "sim/aerotech/ctrl", "sim/aerotech/x"


@pytest.fixture(scope="module")
def automation1(automation1_stack):
    return automation1_stack  # tests/conftest.py: the shipped Automation1 server alone


def refusal(call) -> tango.DevError:
    with pytest.raises(tango.DevFailed) as exc:
        call()
    return exc.value.args[0]


def test_pso_distance_below_the_encoder_resolution_is_refused_and_nothing_changes(automation1):
    ctrl = automation1.proxy(CTRL)
    before = ctrl.pso_distance
    error = refusal(lambda: ctrl.write_attribute("pso_distance", 1e-300))
    assert error.reason == "PsoDistanceTooSmall"
    assert "below the minimum" in error.desc and "encoder resolution" in error.desc
    assert ctrl.pso_distance == before
    ctrl.PsoArm()
    ctrl.PsoDisarm()
    assert ctrl.state() == DevState.ON


def test_memorized_bad_pso_distance_does_not_wedge_init(automation1):
    ctrl = automation1.proxy(CTRL)
    before = ctrl.pso_distance
    db = tango.Database(*automation1.tango_host.split(":"))
    db.put_device_attribute_property(CTRL, {"pso_distance": {"__value": ["1e-300"]}})
    ctrl.Init()
    wait_until(lambda: ctrl.state() is not None, 10, message="the controller to answer after Init")
    assert ctrl.pso_distance == before
    x = automation1.proxy(X)
    ctrl.PsoArm()
    x.write_attribute("position", x.position + 0.5)
    wait_until(lambda: x.state() != DevState.MOVING, 30, message="X to stop")
    ctrl.PsoDisarm()
    assert ctrl.pso_pulse_count == round(0.5 / before)
    assert ctrl.state() == DevState.ON


def test_huge_dwell_is_refused_naming_its_line(automation1):
    error = refusal(lambda: automation1.proxy(CTRL).RunProgram("Dwell(0.1)\nDwell(1e300)\n"))
    assert error.reason == "ProgramRejected"
    assert error.desc.startswith("line 2: ") and "longer than the maximum" in error.desc


def test_deeply_nested_expression_names_the_line(automation1):
    program = "var $a = 1\nDwell(" + "(" * 5000 + "0" + ")" * 5000 + ")\n"
    error = refusal(lambda: automation1.proxy(CTRL).RunProgram(program))
    assert error.reason == "ProgramSyntaxError"
    assert error.desc.startswith("line 2: ") and "nested deeper than" in error.desc
    assert "Recursion" not in error.desc


def test_over_long_program_is_refused_and_axes_still_answer(automation1):
    ctrl, x = automation1.proxy(CTRL), automation1.proxy(X)
    error = refusal(lambda: ctrl.RunProgram("Dwell(0)\n" * 100_000))
    assert error.reason == "ProgramSyntaxError"
    assert "program too long (100000 lines" in error.desc
    assert x.state() != DevState.FAULT and ctrl.task_state != 1


def test_every_pulse_event_is_bounded_even_after_a_long_step(make_harness):
    harness = make_harness()
    sim = harness.sim
    sim.pso_configure(axis="X", distance=1e-4)
    sim.pso_arm()
    sim.move_absolute("X", 10.0, velocity=50.0)
    harness.step(1.0)  # one late worker step covering a whole second of pulses
    pulses = [event for event in harness.events if isinstance(event, PulseEvent)]
    assert max(len(event.timestamps) for event in pulses) <= MAX_PULSES_PER_EVENT
    assert sum(len(event.timestamps) for event in pulses) == sim.pso_status().pulse_count > MAX_PULSES_PER_EVENT
    firsts = [event.first for event in pulses]
    assert firsts == sorted(firsts) and firsts[0] == 1


@pytest.mark.parametrize(("attribute", "value"), [("velocity", 7.0), ("acceleration", 150.0)])
def test_memorized_write_on_a_full_database_disk_changes_nothing(automation1, attribute, value):
    x = automation1.proxy(X)
    before = x.read_attribute(attribute).value
    database = automation1.component("database")["pid"]
    # The database's next file growth fails with EFBIG, as on a full disk.
    resource.prlimit(database, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    try:
        error = refusal(lambda: x.write_attribute(attribute, value))
    finally:
        resource.prlimit(database, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert error.reason == "MemorizeFailed"
    assert f"{X}/{attribute}: the database cannot store" in error.desc and "nothing changed" in error.desc
    assert x.read_attribute(attribute).value == before
    x.write_attribute(attribute, value)  # with room again, the same write succeeds and is memorized
    assert x.read_attribute(attribute).value == value
    db = tango.Database(*automation1.tango_host.split(":"))
    assert float(db.get_device_attribute_property(X, attribute)[attribute]["__value"][0]) == value
    x.write_attribute(attribute, before)


def test_capture_capacity_beyond_the_spectra_is_refused():
    with pytest.raises(ValueError, match=f"capture_capacity 2000000 must be between 1 and {MAX_CAPTURE}"):
        Automation1Sim(capture_capacity=2_000_000, start=False)


def test_axis_reads_go_on_while_a_long_program_is_checked(make_harness):
    """Parsing and the dry run of the longest allowed program happen outside the simulator's lock."""
    sim = make_harness().sim
    program = "MoveIncremental(X, 0.001)\nMoveIncremental(X, -0.001)\n" * (MAX_LINES // 2)
    checked = threading.Thread(target=sim.run_program, args=(program,))
    checked.start()
    reads_while_checking = 0
    while checked.is_alive():
        sim.axis_status("X")
        reads_while_checking += checked.is_alive()
    checked.join()
    assert reads_while_checking > 1  # a check under the lock would let at most the first read through
    assert sim.task_status().state is TaskState.Running
