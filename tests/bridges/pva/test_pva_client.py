"""bridges.pva_client.Interface against the real bridge: gets, sets with readback validation,
read-only mode, retries of timed-out puts and parallel sets."""

import logging
import threading
from functools import partial

import pytest

from bridges.pva_client import Interface, wait_for_readback
from tango_servers.stack.waiting import wait_until

PREFIX = "TEST:TARGET:1:"
SETPOINT, READBACK, TEMPERATURE = PREFIX + "setpoint", PREFIX + "readback", PREFIX + "temperature"


@pytest.fixture
def interface_for(bridge_stack, pva):  # `pva`: the bridge's PVs answer before the test starts
    interfaces = []

    def make(**options):
        interface = Interface(conf=bridge_stack.pva, **options)
        interfaces.append(interface)
        return interface

    yield make
    for interface in interfaces:
        interface.close()


@pytest.fixture
def settled(target):
    """The target with no stalled writes pending and the readback where the setpoint is."""
    wait_until(lambda: target.stall_writes == 0, 10.0, message="no stalled writes left")
    target.stall_seconds = 0.0
    wait_until(lambda: target.readback == target.setpoint, 20.0, message="readback at the setpoint")
    return target


def readback_of(readback_pv, count_down=10.0, tolerance=1e-6):
    return partial(wait_for_readback, readback_pv=readback_pv, tolerance=tolerance, count_down=count_down, offset=0)


def test_get_values_returns_a_dict_of_pv_values(interface_for, target):
    values = interface_for().get_values([TEMPERATURE, PREFIX + "label"])
    assert set(values) == {TEMPERATURE, PREFIX + "label"}
    assert values[PREFIX + "label"] == target.label
    assert values[TEMPERATURE].severity in (0, 1, 2, 3)


def test_set_values_waits_for_the_readback(interface_for, settled):
    target = settled
    goal = target.setpoint + 2.0
    results = interface_for().set_values({SETPOINT: goal}, configs={SETPOINT: readback_of(READBACK)})
    assert results[SETPOINT] == pytest.approx(goal)
    assert target.readback == pytest.approx(goal)


def test_validation_failure_names_the_pvs(interface_for, settled):
    target = settled
    goal = target.setpoint + (-20.0 if target.setpoint > 0 else 20.0)  # a one-second move at 20 mm/s
    with pytest.raises(ValueError, match=f"PV {SETPOINT} .*{READBACK}.*cannot reach"):
        interface_for().set_values({SETPOINT: goal}, configs={SETPOINT: readback_of(READBACK, count_down=0.3)})
    assert target.setpoint == goal  # the put itself went through


def test_read_only_logs_and_sets_nothing(interface_for, settled, caplog):
    target = settled
    writes, setpoint = target.write_count, target.setpoint
    interface = interface_for(read_only=True)
    with caplog.at_level(logging.INFO, logger="bridges.pva_client"):
        assert interface.set_values({SETPOINT: setpoint + 1}, configs={SETPOINT: readback_of(READBACK)}) == {}
    assert f"would set {SETPOINT} to {setpoint + 1!r}" in caplog.text
    assert (target.write_count, target.setpoint) == (writes, setpoint)
    assert interface.get_values([SETPOINT])[SETPOINT] == setpoint  # gets still work


def test_a_timed_out_put_is_retried_twice(interface_for, settled, caplog):
    target = settled
    writes, goal = target.write_count, target.setpoint + 1.0
    target.stall_seconds = 1.0  # longer than the client's timeout, shorter than the retry period
    target.stall_writes = 2
    interface = interface_for(timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="bridges.pva_client"):
        interface.set_values({SETPOINT: goal})
    assert target.write_count == writes + 3  # two stalled tries, then one that went through at once
    assert caplog.text.count("timed out") == 2
    assert target.setpoint == goal


def test_a_put_timing_out_three_times_raises(interface_for, settled):
    target = settled
    writes = target.write_count
    target.stall_seconds = 1.0
    target.stall_writes = 3
    with pytest.raises(TimeoutError, match=f"{SETPOINT} timed out 3 times"):
        interface_for(timeout=0.5).set_values({SETPOINT: target.setpoint + 1.0})
    wait_until(lambda: target.write_count == writes + 3, 10.0, message="the three stalled writes")


def meet_then(barrier, validation):
    """A validation that first waits for every other validation to be running too."""

    def validate(**kwargs):
        barrier.wait()
        return validation(**kwargs)

    return validate


def test_parallel_sets_run_their_validations_concurrently(interface_for, settled):
    target = settled
    goals = {SETPOINT: target.setpoint + 1.0, TEMPERATURE: 250.0}
    barrier = threading.Barrier(2, timeout=10.0)
    configs = {
        SETPOINT: meet_then(barrier, readback_of(READBACK)),
        TEMPERATURE: meet_then(barrier, readback_of(TEMPERATURE)),
    }
    results = interface_for(parallel=True).set_values(goals, configs=configs)
    assert results == pytest.approx(goals)
    # sequentially, the first validation waits alone at the barrier and gives up
    lonely = threading.Barrier(2, timeout=1.0)
    configs = {name: meet_then(lonely, readback_of(READBACK if name == SETPOINT else name)) for name in goals}
    with pytest.raises(threading.BrokenBarrierError):
        interface_for(parallel=False).set_values(goals, configs=configs)
