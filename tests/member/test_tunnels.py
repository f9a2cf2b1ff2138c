"""The node agent's tunnel translation accepts both the hub's plan and the API's peers."""

from __future__ import annotations

import base64

from crds.federation import TunnelPeer
from datapath.tunnel import parse_state
from member.tunnels import tunnel_state

KEY = base64.b64encode(bytes(range(32))).decode()


def test_planned_and_api_peers_translate_to_a_state_datapath_accepts() -> None:
    planned = TunnelPeer.model_validate({  # as the hub plans it: keepalive always set
        "cluster": "member-2", "node": "member-2-node-1", "publicKey": KEY, "endpoint": "172.30.2.11:51820",
        "allowedIPs": ["10.102.1.0/24", "100.96.0.3/32"], "persistentKeepaliveSeconds": 25,
    })
    api_peer = TunnelPeer.model_validate({
        "cluster": "member-2", "node": "member-2-node-2", "publicKey": KEY.replace("A", "B", 1),
        "endpoint": "172.30.2.12:51820", "allowedIPs": ["10.102.2.0/24"],
    })
    document = tunnel_state("100.96.0.2", [planned, api_peer])
    assert document["peers"][0]["persistentKeepaliveSeconds"] == 25
    assert document["peers"][1]["persistentKeepaliveSeconds"] == 0  # unset in the API means off
    parsed = parse_state(document)
    assert [str(peer.endpoint) for peer in parsed.peers] == ["172.30.2.11:51820", "172.30.2.12:51820"]


def test_a_same_cluster_peers_accepted_ips_reach_wireguard_but_no_route() -> None:
    """The agent's path: BalancingNode.spec.tunnel peers (API form) -> tunnel_state -> datapath state."""
    same_cluster = TunnelPeer.model_validate({
        "cluster": "member-1", "node": "member-1-node-2", "publicKey": KEY, "endpoint": "172.30.1.12:51820",
        "allowedIPs": ["100.96.0.2/32"], "acceptedIPs": ["10.101.2.0/24"], "persistentKeepaliveSeconds": 25,
    })
    document = tunnel_state("100.96.0.1", [same_cluster])
    assert document["peers"][0]["acceptedIPs"] == ["10.101.2.0/24"]
    parsed = parse_state(document)
    (peer,) = parsed.peers
    assert [str(net) for net in peer.wireguard_ips] == ["10.101.2.0/24", "100.96.0.2/32"]
    assert [str(net) for net in parsed.routed_networks()] == ["100.96.0.2/32"]
