"""The test harness: isolated stacks started by the same launcher code users run.

- `stack` (session): the shipped default configuration on free ports in a temporary state dir.
- `make_stack` (function): a factory for extra isolated stacks with a given dsconfig dict.
- `automation1_stack` (module): the shipped Automation1 server alone (no Redis, no bridges).
Tests never touch a stack the user has running: every stack here has its own state dir and port.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tango_servers.stack.testing import RunningStack, shipped_servers, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    running.export_tango_host()
    try:
        yield running
    finally:
        running.down()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., RunningStack]]:
    started: list[RunningStack] = []

    def make(config: dict[str, Any] | None = None, **options: Any) -> RunningStack:
        running = start_stack(tmp_path / f"stack{len(started)}", config=config, **options)
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            running.down()


@pytest.fixture(scope="module")
def automation1_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        tmp_path_factory.mktemp("automation1"),
        config={"servers": shipped_servers("Automation1")},
        redis=False,
        bridges=False,
    )
    try:
        yield running
    finally:
        running.down()
