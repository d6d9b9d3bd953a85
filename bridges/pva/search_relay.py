"""Searches that PVA clients without settings broadcast on this host's network, handed to a
loopback-only bridge, so that `pvget SIM:AEROTECH:X:position` works with no environment.

Without EPICS settings a pvxs or pvAccess client sends its searches only to the broadcast
addresses of the host's network interfaces (loopback has none; docs/pva.md shows the strace),
which a server on 127.0.0.1 does not answer. The relay binds the UDP search port on each of
those broadcast addresses (never the wildcard), keeps only the searches this host sent (their
source is one of its own addresses) and sends them on, unchanged, to the bridge's loopback
address from a loopback socket. The bridge answers the relay's address, 127.0.0.1, at the port
the search names, which is the client's own search socket, and the client connects to the
address the answer names, the bridge's. The bridge thus answers only clients of this host and
nothing it or the relay sends leaves loopback; searches from other hosts are dropped.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading

import psutil

__all__ = ["SearchRelay", "network_broadcasts"]

logger = logging.getLogger(__name__)

_MAX_DATAGRAM = 65535


def network_broadcasts() -> tuple[list[str], set[str]]:
    """The IPv4 broadcast addresses of this host's non-loopback interfaces, and all its IPv4 addresses."""
    broadcasts, own = [], set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family != socket.AF_INET:
                continue
            own.add(address.address)
            if address.broadcast and not ipaddress.IPv4Address(address.address).is_loopback:
                broadcasts.append(address.broadcast)
    return sorted(set(broadcasts)), own


class SearchRelay:
    """Relays this host's broadcast PVA searches on `port` to `target` (a loopback address)."""

    def __init__(self, target: str, port: int):
        if not ipaddress.IPv4Address(target).is_loopback:
            raise ValueError(f"search relay target {target} is not a loopback address")
        self.target = target
        self.port = port
        self.relayed = 0  # searches handed to the bridge
        self.dropped = 0  # searches from other hosts
        self.addresses: list[str] = []  # the broadcast addresses listened on
        self._selector = selectors.DefaultSelector()
        self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._own: set[str] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._relay_forever, name="pva-search-relay", daemon=True)

    def start(self) -> SearchRelay:
        """Listen on every network broadcast address that can be bound (logged when one cannot)."""
        broadcasts, self._own = network_broadcasts()
        self._out.bind((self.target, 0))
        for address in broadcasts:
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # shared with pvxs's UDP socket
            try:
                listener.bind((address, self.port))
            except OSError as exc:
                logger.warning("PVA search relay cannot listen on %s:%d: %s", address, self.port, exc.strerror)
                listener.close()
                continue
            self._selector.register(listener, selectors.EVENT_READ)
            self.addresses.append(address)
        self._thread.start()
        logger.info("PVA search relay: %s:%d -> %s", ",".join(self.addresses), self.port, self.target)
        return self

    def close(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._out.close()

    def _relay_forever(self) -> None:
        while not self._stopped.is_set():
            for key, _ in self._selector.select(timeout=0.5):  # the timeout only bounds how long close() waits
                try:
                    data, (source, _port) = key.fileobj.recvfrom(_MAX_DATAGRAM)  # type: ignore[union-attr]
                    if source not in self._own:
                        self.dropped += 1
                        continue
                    self._out.sendto(data, (self.target, self.port))
                    self.relayed += 1
                except OSError as exc:
                    logger.warning("PVA search relay: %s", exc)
