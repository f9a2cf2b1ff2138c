"""IPv4 address pools: node proxy addresses (the mesh) and clusterset IPs (FederatedServices).

The hub keeps no allocation state of its own: what is allocated is read back from the objects
(`claim`) before anything new is handed out (`allocate`), so allocations survive restarts and an
address is never given to two holders.
"""

from __future__ import annotations

import ipaddress


class AddressPool:
    """The usable addresses of a CIDR (network and broadcast skipped below /31), and which are taken.

    `allocate` hands out the first free address at or after a cursor that moves past each address
    it gives, wrapping at the end: a fresh pool gives the lowest free addresses in order, and a
    long-lived one does not hand a just-released address out again at once.
    """

    def __init__(self, network: ipaddress.IPv4Network | str) -> None:
        self.network = ipaddress.IPv4Network(network) if isinstance(network, str) else network
        first, last = int(self.network.network_address), int(self.network.broadcast_address)
        if self.network.prefixlen < 31:
            first, last = first + 1, last - 1
        self.first, self.last = first, last
        self._taken: set[int] = set()
        self._cursor = first

    @property
    def capacity(self) -> int:
        return self.last - self.first + 1

    @property
    def free(self) -> int:
        return self.capacity - len(self._taken)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address):
            return False
        return self.first <= int(address) <= self.last

    def is_taken(self, address: ipaddress.IPv4Address) -> bool:
        return int(address) in self._taken

    def claim(self, address: ipaddress.IPv4Address | str | None) -> ipaddress.IPv4Address | None:
        """Mark an address already held as taken; None when it is unreadable, outside, or taken."""
        parsed = parse_ipv4(address)
        if parsed is None or parsed not in self or int(parsed) in self._taken:
            return None
        self._taken.add(int(parsed))
        return parsed

    def release(self, address: ipaddress.IPv4Address | str | None) -> None:
        parsed = parse_ipv4(address)
        if parsed is not None:
            self._taken.discard(int(parsed))

    def allocate(self) -> ipaddress.IPv4Address | None:
        """The next free address, or None when the pool is exhausted."""
        if len(self._taken) >= self.capacity:
            return None
        candidate = self._cursor
        while candidate in self._taken:
            candidate = candidate + 1 if candidate < self.last else self.first
        self._taken.add(candidate)
        self._cursor = candidate + 1 if candidate < self.last else self.first
        return ipaddress.IPv4Address(candidate)


def parse_ipv4(address: ipaddress.IPv4Address | str | None) -> ipaddress.IPv4Address | None:
    if address is None or isinstance(address, ipaddress.IPv4Address):
        return address
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        return None
