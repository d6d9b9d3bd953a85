"""A client with no EPICS address settings finds the loopback-only bridge, through its search relay.

Such a client broadcasts its searches on the network interfaces. So that the test sends nothing
onto a real network, it runs in a network namespace it creates and removes, whose one network
interface has an address from 198.18.0.0/15, the range reserved for such tests, and a broadcast
address; it is one end of a veth pair whose other end is in the namespace too, so whatever is
sent on it stays there."""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLIENT = Path(__file__).with_name("broadcast_client.py")
ADDRESS, BROADCAST = "198.18.77.1/24", "198.18.77.255"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"tsb{os.getpid()}-pva"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        ip("-n", name, "addr", "add", ADDRESS, "broadcast", BROADCAST, "dev", "lan0")
        ip("-n", name, "link", "set", "lan1", "up")
        ip("-n", name, "link", "set", "lan0", "up")
        yield name
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            ip("netns", "del", name)


def test_a_client_without_address_settings_finds_the_bridge(namespace, tmp_path):
    """The relay's sockets are bound to the interfaces' broadcast addresses (nothing of the bridge
    listens on 0.0.0.0 for them); it hands the search to the loopback-only server, which answers."""
    run = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, str(CLIENT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["broadcasts"] == [BROADCAST]
    assert result["found"], result
    assert result["relayed_after"] > result["relayed_before"], result
    assert BROADCAST in result["relay_addresses"], result
