"""Links, addresses and routes of the tunnel interface, over netlink with pyroute2.

Routes the tunnel manager owns carry their own routing protocol number (`ROUTE_PROTO`), so they can be
listed and diffed without touching anyone else's routes. A route whose peer went away is not deleted
but turned into an `unreachable` route (also ours): traffic for that peer fails at once instead of
leaking onto the default route in plaintext. It goes away when a peer claims the network again, or on
`down`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from datapath.tunnel.errors import TunnelError
from datapath.tunnel.spec import IPNetwork

ROUTE_PROTO = 98  # "balancing" in `ip route ... proto 98`; not in /etc/iproute2/rt_protos
MAIN_TABLE = 254
RTN_UNICAST = 1
RTN_UNREACHABLE = 7
SCOPE_LINK = 253
SCOPE_NOWHERE = 255  # in a delete request: match a route of any scope


@contextmanager
def netlink(netns: str | None) -> Iterator[Any]:
    """A netlink socket in the node's network namespace (the host's when None); never creates a namespace."""
    try:
        handle = NetNS(netns, flags=0) if netns else IPRoute()
    except FileNotFoundError:
        raise TunnelError(f"network namespace {netns!r} does not exist") from None
    try:
        yield handle
    finally:
        handle.close()


def link_index(nl: Any, name: str) -> int | None:
    found = nl.link_lookup(ifname=name)
    return int(found[0]) if found else None


def link_kind(nl: Any, index: int) -> str | None:
    """`wireguard` for kernel WireGuard, `tun` for wireguard-go's TUN device."""
    for link in nl.get_links(index):
        info = link.get_attr("IFLA_LINKINFO")
        if info is not None:
            kind = info.get_attr("IFLA_INFO_KIND")
            return str(kind) if kind else None
    return None


def set_link_up(nl: Any, index: int) -> None:
    nl.link("set", index=index, state="up")


def ipv4_addresses(nl: Any, index: int) -> set[ipaddress.IPv4Interface]:
    return {
        ipaddress.IPv4Interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}")
        for address in nl.get_addr(index=index, family=socket.AF_INET)
    }


def sync_proxy_address(nl: Any, index: int, proxy: ipaddress.IPv4Address | None) -> tuple[int, int]:
    """Make the proxy IPv4 (as /32) the interface's only IPv4 address; return (added, removed)."""
    wanted = {ipaddress.IPv4Interface(f"{proxy}/32")} if proxy else set()
    current = ipv4_addresses(nl, index)
    for address in sorted(wanted - current):
        nl.addr("add", index=index, address=str(address.ip), prefixlen=32)
    for address in sorted(current - wanted):
        nl.addr("del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
    return len(wanted - current), len(current - wanted)


@dataclass(frozen=True)
class Route:
    destination: IPNetwork
    kind: int  # RTN_UNICAST through the tunnel, or RTN_UNREACHABLE for a removed peer's network
    oif: int | None
    prefsrc: str | None

    @classmethod
    def from_message(cls, message: Any) -> Route:
        family = message["family"]
        default = "0.0.0.0" if family == socket.AF_INET else "::"
        destination = ipaddress.ip_network(f"{message.get_attr('RTA_DST') or default}/{message['dst_len']}")
        oif = message.get_attr("RTA_OIF")
        return cls(destination, int(message["type"]), int(oif) if oif else None, message.get_attr("RTA_PREFSRC"))


def dump_routes(nl: Any) -> tuple[dict[IPNetwork, Route], dict[IPNetwork, Route]]:
    """Main-table unicast and unreachable routes: (the tunnel manager's, everybody else's)."""
    ours: dict[IPNetwork, Route] = {}
    foreign: dict[IPNetwork, Route] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for message in nl.get_routes(family=family, table=MAIN_TABLE):
            if message["type"] in (RTN_UNICAST, RTN_UNREACHABLE):
                route = Route.from_message(message)
                (ours if message["proto"] == ROUTE_PROTO else foreign).setdefault(route.destination, route)
    return ours, foreign


def route_to_tunnel(nl: Any, destination: IPNetwork, index: int, prefsrc: ipaddress.IPv4Address | None) -> None:
    kwargs: dict[str, Any] = {
        "dst": str(destination),
        "oif": index,
        "proto": ROUTE_PROTO,
        "table": MAIN_TABLE,
        "scope": SCOPE_LINK,
    }
    if prefsrc is not None and destination.version == 4:
        kwargs["prefsrc"] = str(prefsrc)
    _route(nl, "replace", destination, **kwargs)


def route_unreachable(nl: Any, destination: IPNetwork) -> None:
    _route(nl, "replace", destination, dst=str(destination), type="unreachable", proto=ROUTE_PROTO, table=MAIN_TABLE)


def delete_route(nl: Any, route: Route) -> None:
    try:
        nl.route(
            "del", dst=str(route.destination), proto=ROUTE_PROTO, table=MAIN_TABLE, type=route.kind, scope=SCOPE_NOWHERE
        )
    except NetlinkError as error:
        if error.code != errno.ESRCH:
            raise TunnelError(f"cannot delete route {route.destination}: {error}") from None


def _route(nl: Any, command: str, destination: IPNetwork, **kwargs: Any) -> None:
    try:
        nl.route(command, **kwargs)
    except NetlinkError as error:
        raise TunnelError(f"cannot {command} route {destination}: {error}") from None
