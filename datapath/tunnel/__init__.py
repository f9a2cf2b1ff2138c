"""WireGuard mesh on a node: keys, interface, peers, routes, node proxy IPv4.

The public API; everything else in this package is internal.

    manager = TunnelManager(resolve_node("member-1-node-1"))
    report = manager.apply(manager.parse(document, source="agent"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datapath import lazy_exports

if TYPE_CHECKING:
    from datapath.errors import DatapathError, StateError
    from datapath.tunnel.device import wireguard_go_binary
    from datapath.tunnel.errors import InvalidTunnelState, TunnelError
    from datapath.tunnel.keys import KeyStore
    from datapath.tunnel.manager import ApplyReport, PeerStatus, TunnelManager, TunnelStatus
    from datapath.tunnel.node import TunnelNode, resolve_node
    from datapath.tunnel.spec import (
        DEFAULT_INTERFACE,
        DEFAULT_KEEPALIVE,
        DEFAULT_LISTEN_PORT,
        PeerSpec,
        TunnelState,
        parse_state,
    )

_EXPORTS = {
    "DatapathError": "datapath.errors",
    "StateError": "datapath.errors",
    "TunnelError": "datapath.tunnel.errors",
    "InvalidTunnelState": "datapath.tunnel.errors",
    "TunnelState": "datapath.tunnel.spec",
    "PeerSpec": "datapath.tunnel.spec",
    "parse_state": "datapath.tunnel.spec",
    "DEFAULT_INTERFACE": "datapath.tunnel.spec",
    "DEFAULT_KEEPALIVE": "datapath.tunnel.spec",
    "DEFAULT_LISTEN_PORT": "datapath.tunnel.spec",
    "TunnelNode": "datapath.tunnel.node",
    "resolve_node": "datapath.tunnel.node",
    "KeyStore": "datapath.tunnel.keys",
    "wireguard_go_binary": "datapath.tunnel.device",
    "TunnelManager": "datapath.tunnel.manager",
    "ApplyReport": "datapath.tunnel.manager",
    "TunnelStatus": "datapath.tunnel.manager",
    "PeerStatus": "datapath.tunnel.manager",
}
__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_LISTEN_PORT",
    "ApplyReport",
    "DatapathError",
    "InvalidTunnelState",
    "KeyStore",
    "PeerSpec",
    "PeerStatus",
    "StateError",
    "TunnelError",
    "TunnelManager",
    "TunnelNode",
    "TunnelState",
    "TunnelStatus",
    "parse_state",
    "resolve_node",
    "wireguard_go_binary",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
