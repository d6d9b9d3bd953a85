"""Fixtures for the PVA bridge tests: a small stack (the test-only BridgeTarget server and the
bridge, started by the suite's launcher) and p4p clients configured from `RunningStack.pva`."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from p4p.client.thread import Context

from tango_servers.stack.testing import RunningStack, start_stack
from tango_servers.stack.waiting import wait_until

TARGET_SERVER = Path(__file__).with_name("target_server.py")
TARGET = "test/target/1"
PREFIX = "TEST:TARGET:1:"
ALLOWED = [
    "test/target/*/temperature",
    "test/target/*/mode",
    "test/target/*/setpoint",
    "test/target/*/State",
    "test/target/*/Bump",
]


def bridge_stack_config(allowlist: list[str] | None = None) -> dict[str, Any]:
    """A dsconfig document: BridgeTarget `test/target/1` and the bridge exporting test/*/*."""
    return {
        "servers": {
            "BridgeTarget": {"test": {"BridgeTarget": {TARGET: {"properties": {}}}}},
            "PvaBridge": {
                "1": {
                    "PvaBridge": {
                        "sys/bridge/pva": {
                            "properties": {"devices": ["test/*/*"], "put_allowlist": list(allowlist or ALLOWED)}
                        }
                    }
                }
            },
        }
    }


def pva_context(running: RunningStack) -> Context:
    """A p4p client that finds the stack's bridge on loopback only."""
    assert running.pva, "the stack reports no PVA settings: is the PvaBridge running?"
    return Context("pva", conf=dict(running.pva), useenv=False)


def wait_for_pvs(context: Context, names: list[str], timeout: float = 30.0) -> None:
    """Until every PV answers a get (the bridge exports a device once it reaches it)."""

    def all_there() -> bool:
        context.get(names, timeout=2.0)
        return True

    wait_until(all_there, timeout, interval=0.2, message=f"PVs {names} from the bridge")


@pytest.fixture(scope="session")
def bridge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """BridgeTarget + PvaBridge on their own stack, shared by the PVA tests that do not restart it."""
    running = start_stack(
        tmp_path_factory.mktemp("pva-stack"),
        config=bridge_stack_config(),
        extra_servers={"BridgeTarget": f"{TARGET_SERVER}:main"},
        redis=False,
    )
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="session")
def pva(bridge_stack: RunningStack) -> Iterator[Context]:
    context = pva_context(bridge_stack)
    wait_for_pvs(context, [PREFIX + "temperature", PREFIX + "frame"])
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def target(bridge_stack: RunningStack):
    return bridge_stack.proxy(TARGET)


@pytest.fixture
def make_bridge_stack(make_stack):
    """`make_bridge_stack(allowlist=None, **start_stack_options) -> RunningStack`: a private stack
    for destructive tests."""

    def make(allowlist: list[str] | None = None, **options: Any) -> RunningStack:
        return make_stack(
            bridge_stack_config(allowlist),
            extra_servers={"BridgeTarget": f"{TARGET_SERVER}:main"},
            redis=False,
            **options,
        )

    return make


@pytest.fixture
def pva_client_for() -> Iterator[Any]:
    """`pva_client_for(running) -> Context` with the PVs of BridgeTarget answering; closed after the test."""
    contexts: list[Context] = []

    def make(running: RunningStack) -> Context:
        context = pva_context(running)
        contexts.append(context)
        wait_for_pvs(context, [PREFIX + "temperature"])
        return context

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
