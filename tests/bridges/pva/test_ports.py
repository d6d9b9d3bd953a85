"""Which ports the launcher gives the PVA bridge: the standard EPICS ones on the default stack
when they are free, free ones otherwise and on every test stack."""

import socket

import pytest
from p4p.client.thread import Context

from tango_servers.stack.processes import LOOPBACK
from tango_servers.stack.wiring import STANDARD_PVA_PORTS, pva_ports, tcp_port_free, udp_port_free

from .conftest import PREFIX, wait_for_pvs

TCP, UDP = STANDARD_PVA_PORTS


def test_standard_ports_when_free():
    assert pva_ports(True, lambda port: True, lambda port: True) == (5075, 5076)


@pytest.mark.parametrize(("tcp_free", "udp_free"), [(False, True), (True, False), (False, False)])
def test_a_taken_standard_port_is_replaced_by_a_free_one(tcp_free, udp_free):
    tcp, udp = pva_ports(True, lambda port: tcp_free, lambda port: udp_free)
    assert (tcp == TCP) is tcp_free and (udp == UDP) is udp_free
    assert tcp_port_free(tcp) and udp_port_free(udp)


def test_test_stacks_never_ask_for_the_standard_ports():
    asked = []
    tcp, udp = pva_ports(False, lambda port: asked.append(port) or True, lambda port: asked.append(port) or True)
    assert not asked and TCP not in (tcp, udp) and UDP not in (tcp, udp)


def test_a_real_listener_on_the_tcp_port_makes_it_taken():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not tcp_port_free(port)
    assert tcp_port_free(port)


def test_an_exclusive_udp_socket_makes_the_search_port_taken_but_an_epics_one_shares_it():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exclusive:
        exclusive.bind(("0.0.0.0", 0))
        assert not udp_port_free(exclusive.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as shared:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pvxs binds 5076
        shared.bind(("0.0.0.0", 0))
        assert udp_port_free(shared.getsockname()[1])


def test_a_stack_asking_for_the_standard_ports_serves_pvs_there(make_bridge_stack):
    """As `tango-suite up` with the default --tango-host: a client needs only the address list."""
    if not (tcp_port_free(TCP) and udp_port_free(UDP)):
        pytest.skip("5075/5076 are taken on this host; the fallback is tested above")
    running = make_bridge_stack(pva_standard_ports=True)
    bridge = running.proxy("sys/bridge/pva")
    assert (bridge.actual_server_port, bridge.actual_broadcast_port) == (TCP, UDP)
    conf = {"EPICS_PVA_ADDR_LIST": LOOPBACK, "EPICS_PVA_AUTO_ADDR_LIST": "NO"}  # standard ports: no port settings
    with Context("pva", conf=conf, useenv=False) as context:
        wait_for_pvs(context, [PREFIX + "temperature"])
