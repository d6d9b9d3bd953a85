"""What the PSO trigger/gate controller asks of the PSO for a Sardana synchronization (no servers)."""

import pytest

pytest.importorskip("sardana")

from sardana.pool.pooldefs import SynchDomain, SynchParam

from tango_servers.sardana.controllers.automation1_pso_tg_ctrl import PsoPlan, pso_plan


def description(
    initial: float, total: float, repeats: int, *, position: bool = True, delay: float | None = None
) -> list[dict]:
    """One group as Sardana's CTScan builds it (macroserver/scan/gscan.py)."""
    domain = SynchDomain.Position if position else SynchDomain.Time
    return [
        {
            SynchParam.Delay: {SynchDomain.Time: 0.1, **({} if delay is None else {SynchDomain.Position: delay})},
            SynchParam.Initial: {domain: initial},
            SynchParam.Active: {domain: 0.05},
            SynchParam.Total: {domain: total, SynchDomain.Time: 0.1},
            SynchParam.Repeats: repeats,
        }
    ]


def pulses(plan: PsoPlan, arm: float, travel_to: float) -> list[float]:
    """The pulse positions of the PSO (arm + k * d, k != 0, inside the window) over a travel."""
    low, high = plan.window
    d = plan.distance
    lo, hi = sorted((arm, travel_to))
    positions = [arm + k * d for k in range(-100_000, 100_000) if k and lo <= arm + k * d <= hi]
    return sorted(p for p in positions if low <= p <= high)


@pytest.mark.parametrize(
    ("initial", "total", "repeats", "at_rest", "moves"),
    [
        (-3.0, 0.5, 13, -3.37, True),  # positive scan, pre-start an odd fraction of a spacing behind
        (10.0, -0.25, 9, 10.6, True),  # negative scan
        (0.0, 0.1, 5, 0.0, True),  # no acceleration distance: the arm position must still be behind
        (2.0, 0.5, 3, 1.0, False),  # already a whole number of spacings behind: no alignment move
    ],
)
def test_the_pulses_fall_exactly_on_the_scan_points(initial, total, repeats, at_rest, moves):
    plan = pso_plan(description(initial, total, repeats))
    arm = plan.arm_position(at_rest)
    behind = (initial - arm) / total
    assert behind >= 1 - 1e-9 and abs(behind - round(behind)) < 1e-9
    assert abs(arm - at_rest) <= plan.distance + 1e-9  # never more than one spacing of extra travel
    assert (abs(arm - at_rest) > 1e-9) == moves
    final = initial + total * (repeats + 2)  # the axis decelerates past the last point
    expected = sorted(initial + i * total for i in range(repeats))
    assert pulses(plan, arm, final) == pytest.approx(expected)


def test_a_time_domain_synchronization_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="Position-domain synchronization"):
        pso_plan(description(0.0, 0.1, 5, position=False))


def test_bad_descriptions_are_refused():
    with pytest.raises(ValueError, match="non-zero spacing"):
        pso_plan(description(0.0, 0.0, 5))
    with pytest.raises(ValueError, match="one group"):
        pso_plan(description(0.0, 0.1, 5) * 2)


def test_an_axis_away_from_the_scan_start_is_not_the_scanned_one():
    """CTScan's Delay in the Position domain is the acceleration distance: the scanned motor waits
    at Initial - Delay. Any other axis is refused before anything moves."""
    plan = pso_plan(description(-2.0, 0.5, 9, delay=0.26))
    assert plan.pre_start == pytest.approx(-2.26)
    plan.check_at_pre_start("sim/aerotech/omega", -2.26)
    with pytest.raises(ValueError, match=r"sim/aerotech/x is at 0, not at the scan's start position -2\.26"):
        plan.check_at_pre_start("sim/aerotech/x", 0.0)
