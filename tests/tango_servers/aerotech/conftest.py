"""Fixtures for the Automation1 tests: a simulator on a manual clock, stepped by the test."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tango_servers.aerotech.backend import BackendEvent
from tango_servers.aerotech.sim import Automation1Sim

T0 = 1_795_000_000.0  # a present-day epoch time: the precision of doubles there matters


class ManualClock:
    """Simulated time that only moves when the test says so."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class SimHarness:
    """An Automation1Sim without its worker thread; `run_for` steps it like the worker would."""

    def __init__(self, state_file: Path | None = None, **options):
        self.clock = ManualClock()
        self.sim = Automation1Sim(clock=self.clock, start=False, state_file=state_file, **options)
        self.events: list[BackendEvent] = []
        self.sim.add_listener(self.events.append)

    def step(self, dt: float) -> None:
        self.clock.t += dt
        self.sim.poll()

    def run_for(self, seconds: float, dt: float = 0.01) -> None:
        end = self.clock.t + seconds
        while self.clock.t < end - 1e-12:
            self.step(min(dt, end - self.clock.t))

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0, dt: float = 0.01) -> None:
        end = self.clock.t + timeout
        while not predicate():
            if self.clock.t >= end:
                raise TimeoutError(f"condition not met within {timeout} s of simulated time")
            self.step(dt)

    def wait_at_rest(self, *axes: str, dt: float = 0.01) -> None:
        self.run_until(lambda: not any(self.sim.axis_status(a).moving for a in axes), dt=dt)


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., SimHarness]]:
    """Factory of SimHarness objects (state files in tmp_path unless given); all closed afterwards."""
    made: list[SimHarness] = []

    def make(state_file: Path | None = None, **options) -> SimHarness:
        h = SimHarness(state_file=state_file or tmp_path / f"axes{len(made)}.json", **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.sim.close()


@pytest.fixture
def harness(make_harness: Callable[..., SimHarness]) -> SimHarness:
    return make_harness()
