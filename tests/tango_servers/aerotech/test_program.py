import numpy as np
import pytest

from tango_servers.aerotech.backend import AxisEvent, MotionError, TaskEvent, TaskState
from tango_servers.aerotech.program import ProgramError, parse

AXES = ["X", "Y", "Z", "OMEGA"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("MoveAbsolute(X, 1)\nMoveAbsolut(X, 2)", 2, "unknown command 'MoveAbsolut'"),
        ("var $a = 1\n\n$b = 2", 3, "variable $b is not declared"),
        ("MoveAbsolute(Q, 1)", 1, "unknown axis 'Q'"),
        ("for $i = 1 to 3\n  Dwell(0.1)\n", 1, "never closed"),
        ("end", 1, "'end' without"),
        ("MoveAbsolute([X, Y], [1, 2, 3])", 1, "2 axes but 3 positions"),
        ("// fine\nDwell(0.1)\nDwell(0.1 0.2)", 3, "expected ','"),
        ("var $x = (1 + 2", 1, "expected ')'"),
        ("Dwell(1) @", 1, "unexpected character '@'"),
        ("MoveLinear([X, Y], [1, 2], [3, 4])", 1, "feedrate"),
        ("Dwell()", 1, "Dwell takes 1 arguments, got 0"),
    ],
)
def test_syntax_errors_name_their_line(text, line, words):
    with pytest.raises(ProgramError) as exc:
        parse(text, AXES)
    assert exc.value.line == line
    assert str(exc.value).startswith(f"line {line}: ")
    assert words in str(exc.value)


def test_parse_accepts_the_documented_syntax():
    program = parse(
        """
        var $n as integer = 3        // a comment
        var $speed = 5
        for $i = 1 to $n step 1
            MoveIncremental(X, 0.5 * $i, $speed)
        end for
        repeat 2
            Dwell(0.01)
        end
        moveabsolute([x, Y], [1, -(2 + 1) / 3])
        MoveLinear([X, Y], [0, 0], 2)
        WaitForInPosition()
        PsoDistance(X, 0.01)
        PsoWindow(X, 0, 10)
        PsoArm(X)
        PsoDisarm()
        """,
        AXES,
    )
    assert program.moved_axes == ("X", "Y")


def test_a_program_with_a_syntax_error_is_rejected_before_anything_moves(harness):
    with pytest.raises(MotionError, match="line 2: unknown command") as exc:
        harness.sim.run_program("MoveAbsolute(X, 5)\nMoveAbsolutely(X, 6)")
    assert exc.value.reason == "ProgramSyntaxError"
    harness.run_for(0.2)
    assert harness.sim.axis_status("X").position == 0.0
    assert harness.sim.task_status().state is TaskState.Idle


def test_a_target_out_of_limits_deep_in_a_loop_is_rejected_before_anything_moves(harness):
    text = "var $step = 20\nMoveAbsolute(Y, 1)\nfor $i = 1 to 5\n    MoveIncremental(X, $step)\nend\n"
    with pytest.raises(MotionError, match="line 4: MoveIncremental: target 60 mm is above the soft limit high") as exc:
        harness.sim.run_program(text)
    assert exc.value.reason == "ProgramRejected"
    harness.run_for(0.2)
    assert harness.sim.axis_status("X").position == 0.0
    assert harness.sim.axis_status("Y").position == 0.0


def test_endless_loop_is_rejected(harness):
    with pytest.raises(MotionError, match="more than 100000 statements"):
        harness.sim.run_program("var $a = 0\nfor $i = 0 to 1e9\n$a = $a + 1\nend")


def test_program_runs_loops_and_variables_with_exact_timing_and_progress(harness):
    sim = harness.sim
    start = harness.clock.t
    sim.run_program(
        """
        var $d = 0.5
        for $i = 1 to 4
            MoveIncremental(X, $d)      // moves on one axis queue up
        end
        WaitForInPosition(X)
        Dwell(0.25)
        MoveAbsolute([Y, Z], [1, -1], [2, 2])
        """
    )
    assert sim.task_status().state is TaskState.Running
    harness.run_until(lambda: sim.task_status().state is not TaskState.Running, dt=0.013)
    task = sim.task_status()
    assert task.state is TaskState.Complete and task.progress == 1.0
    assert sim.axis_status("X").position == 2.0
    assert sim.axis_status("Y").position == 1.0 and sim.axis_status("Z").position == -1.0
    # 4 moves of 0.5 mm at 5 mm/s (0.15 s each), dwell, then 1 mm at 2 mm/s (0.52 s)
    expected = 4 * (0.5 / 5 + 5 / 100) + 0.25 + (1 / 2 + 2 / 100)
    assert task.timestamp - start == pytest.approx(expected, abs=1e-6)  # epoch doubles resolve 0.24 us
    progress = [e.status.progress for e in harness.events if isinstance(e, TaskEvent)]
    assert len(progress) > 10
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_move_linear_moves_the_axes_together_on_a_straight_line(harness):
    sim = harness.sim
    sim.run_program("MoveLinear([X, Y], [3, 4], 2)")
    harness.run_until(lambda: sim.task_status().state is TaskState.Complete, dt=0.01)
    statuses = [e.status for e in harness.events if isinstance(e, AxisEvent) and e.status.moving]
    xs = {s.timestamp: s.position for s in statuses if s.axis == "X"}
    ys = {s.timestamp: s.position for s in statuses if s.axis == "Y"}
    common = sorted(set(xs) & set(ys))
    assert len(common) > 50
    np.testing.assert_allclose([ys[t] for t in common], [xs[t] * 4 / 3 for t in common], atol=1e-9)
    ends = [e.status.timestamp for e in harness.events if isinstance(e, AxisEvent) and not e.status.moving]
    assert sim.axis_status("X").position == 3.0 and sim.axis_status("Y").position == 4.0
    assert len(set(ends[-2:])) == 1  # both axes arrive at the same instant


def test_abort_stops_the_program_and_its_axes_within_100_ms(harness):
    sim = harness.sim
    sim.run_program("MoveAbsolute(X, 40, 20)\nMoveAbsolute(X, -40, 20)")
    harness.run_for(0.5)
    assert sim.axis_status("X").actual_velocity == pytest.approx(20.0)
    aborted_at = harness.clock.t
    task = sim.abort_program()
    assert task.state is TaskState.Idle and "aborted at line 2" in task.message  # waiting to start the second move
    harness.wait_at_rest("X", dt=0.001)
    stopped = [e.status for e in harness.events if isinstance(e, AxisEvent) and not e.status.moving][-1]
    assert stopped.timestamp - aborted_at <= 0.1
    assert stopped.timestamp - aborted_at == pytest.approx(20 / 1000)  # abort deceleration 1000 mm/s^2


def test_a_program_fly_with_run_up_gives_exact_pulses(harness):
    sim = harness.sim
    sim.run_program(
        """
        MoveAbsolute(X, -0.5)
        WaitForInPosition(X)
        PsoDistance(X, 0.01)
        PsoWindow(X, 0.005, 10.005)
        PsoArm()
        MoveAbsolute(X, 10.5, 5)
        WaitForInPosition(X)
        PsoDisarm()
        """
    )
    harness.run_until(lambda: sim.task_status().state is TaskState.Complete, dt=0.05)
    assert sim.pso_status().pulse_count == 1000
    x = sim.captured().positions["X"]
    np.testing.assert_allclose(np.diff(x), 0.01, atol=1e-9)
    assert x[0] == pytest.approx(0.01, abs=1e-9) and x[-1] == pytest.approx(10.0, abs=1e-9)


def test_runtime_fault_puts_the_task_in_error_with_the_line(harness):
    sim = harness.sim
    sim.run_program("Dwell(0.1)\nMoveAbsolute(X, 30)\nDwell(0.1)")
    harness.run_for(1.0)
    sim.set_soft_limits("X", -50.0, 10.0)
    task = sim.task_status()
    assert task.state is TaskState.Error
    assert "line 3" in task.message and "faulted" in task.message
