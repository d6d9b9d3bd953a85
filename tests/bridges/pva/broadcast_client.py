"""Run by test_broadcast_search.py inside a network namespace of its own: start the PVA test stack,
get a PV as a client with no address settings does (broadcasting its search on the network
interfaces), and print the outcome as one JSON line."""

import json
import sys
from pathlib import Path

import psutil
from conftest import (  # this directory: run as a script
    PREFIX,
    TARGET_SERVER,
    bridge_stack_config,
    pva_context,
    wait_for_pvs,
)
from p4p.client.thread import Context

from bridges.pva.search_relay import network_broadcasts
from tango_servers.stack.testing import start_stack

BRIDGE = "sys/bridge/pva"


def main() -> None:
    running = start_stack(
        Path(sys.argv[1]),
        config=bridge_stack_config(),
        extra_servers={"BridgeTarget": f"{TARGET_SERVER}:main"},
        redis=False,
    )
    try:
        with pva_context(running) as loopback:
            wait_for_pvs(loopback, [PREFIX + "temperature"])
        bridge = running.proxy(BRIDGE)
        port = running.pva["EPICS_PVA_BROADCAST_PORT"]
        before = int(bridge.relayed_searches)
        # Only the search port: the client's address list is its interfaces' broadcast addresses.
        with Context("pva", conf={"EPICS_PVA_BROADCAST_PORT": port}, useenv=False) as context:
            found = context.get(PREFIX + "temperature", timeout=10.0) is not None
        (component,) = [c for c in running.current["components"] if c["name"].startswith("PvaBridge")]
        sockets = psutil.Process(component["pid"]).net_connections(kind="udp")
        result = {
            "broadcasts": network_broadcasts()[0],
            "found": found,
            "relayed_before": before,
            "relayed_after": int(bridge.relayed_searches),
            "relay_addresses": sorted({s.laddr.ip for s in sockets if s.laddr.port == int(port)}),
        }
    finally:
        running.down()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
