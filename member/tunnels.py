"""The node agent's translation of its planned tunnel (proxy IP and peers) into datapath's state file.

Pure: the hub plans (hub.mesh / NodeTunnelEndpoint status), this turns one node's share into the
document `balancing datapath tunnel apply` takes (docs/tunnels.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from datapath.tunnel import DEFAULT_LISTEN_PORT


class PeerLike(Protocol):
    """A planned peer, such as crds' TunnelPeer."""

    @property
    def cluster(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def public_key(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def allowed_ips(self) -> Iterable[str]: ...
    @property
    def accepted_ips(self) -> Iterable[str] | None: ...
    @property
    def persistent_keepalive_seconds(self) -> int | None: ...


def tunnel_state(proxy_ipv4: str, peers: Iterable[PeerLike], listen_port: int = DEFAULT_LISTEN_PORT) -> dict[str, Any]:
    return {
        "listenPort": listen_port,
        "proxyIPv4": proxy_ipv4,
        "peers": [
            {
                "cluster": peer.cluster,
                "node": peer.node,
                "publicKey": peer.public_key,
                "endpoint": peer.endpoint,
                "allowedIPs": [str(address) for address in peer.allowed_ips],
                "acceptedIPs": [str(address) for address in peer.accepted_ips or ()],
                "persistentKeepaliveSeconds": peer.persistent_keepalive_seconds or 0,
            }
            for peer in peers
        ],
    }
