"""The desired-state parser and the `wg set` diff (pure logic; the real thing is in the kernel tests)."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from datapath.tunnel.errors import InvalidTunnelState
from datapath.tunnel.spec import Endpoint, check_key, parse_state
from datapath.tunnel.wg import DumpPeer, parse_dump, peer_set_args

OWN_POD_CIDR = ipaddress.IPv4Network("10.101.1.0/24")


def key(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(32, b"-")[:32]).decode()


def peer(name: str = "member-2-node-1", **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "cluster": "member-2",
        "node": name,
        "publicKey": key(name),
        "endpoint": "172.30.2.11:51820",
        "allowedIPs": ["10.102.1.0/24", "100.96.0.2/32"],
    }
    entry.update(overrides)
    return entry


def parse(data: object) -> Any:
    return parse_state(data, source="state.yaml", own_pod_cidrs=[OWN_POD_CIDR], own_public_key=key("me"))


def problems_of(data: object) -> str:
    with pytest.raises(InvalidTunnelState) as raised:
        parse(data)
    message = str(raised.value)
    assert message.startswith("invalid tunnel state state.yaml: ")
    assert message.endswith("(nothing was changed)")
    return message


def test_a_full_state_parses_with_defaults() -> None:
    state = parse({"proxyIPv4": "100.96.0.1", "peers": [peer()]})
    assert state.interface == "bfwg0"
    assert state.listen_port == 51820
    assert str(state.proxy_ipv4) == "100.96.0.1"
    (only,) = state.peers
    assert only.label == "member-2-node-1"
    assert str(only.endpoint) == "172.30.2.11:51820"
    assert [str(n) for n in only.allowed_ips] == ["10.102.1.0/24", "100.96.0.2/32"]
    assert only.persistent_keepalive == 25
    assert [str(n) for n in state.routed_networks()] == ["10.102.1.0/24", "100.96.0.2/32"]


def test_an_empty_state_means_no_peers() -> None:
    assert parse(None).peers == ()
    assert parse({}).peers == ()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            peer(publicKey="not-a-key"),
            "peers[0] (member-2-node-1): publicKey 'not-a-key' is not a WireGuard key",
        ),
        (peer(publicKey=key("x")[:-2]), "expected 44 characters of base64 encoding 32 bytes"),
        (peer(endpoint="172.30.2.11"), "peers[0] (member-2-node-1): endpoint '172.30.2.11' has no port"),
        (peer(endpoint="node-2:51820"), "host 'node-2' is not an IP address"),
        (peer(endpoint="172.30.2.11:0"), "port '0' is not a number in 1-65535"),
        (
            peer(allowedIPs=["10.101.1.128/25"]),
            "allowedIPs 10.101.1.128/25 overlaps this node's own pod CIDR 10.101.1.0/24",
        ),
        (peer(allowedIPs=["10.0.0.0/8"]), "allowedIPs 10.0.0.0/8 overlaps this node's own pod CIDR 10.101.1.0/24"),
        (
            peer(allowedIPs=["10.102.1.5/24"]),
            "allowedIPs[0] '10.102.1.5/24' has host bits set: did you mean 10.102.1.0/24?",
        ),
        (peer(allowedIPs=["banana"]), "allowedIPs[0] 'banana' is not a CIDR"),
        (peer(allowedIPs=["172.30.0.0/16"]), "endpoint 172.30.2.11:51820 lies inside allowedIPs 172.30.0.0/16"),
        (peer(persistentKeepaliveSeconds=-1), "persistentKeepaliveSeconds -1 is not a number of seconds"),
        (peer(colour="blue"), "peers[0] (member-2-node-1): unknown field 'colour'"),
        (peer(publicKey=key("me")), "publicKey is this node's own public key"),
        ({"cluster": "member-2"}, "peers[0]: publicKey is missing"),
        (peer(acceptedIPs=["10.102.2.5/24"]), "acceptedIPs[0] '10.102.2.5/24' has host bits set"),
        (peer(acceptedIPs="10.102.2.0/24"), "peers[0] (member-2-node-1): acceptedIPs must be a list"),
        (
            peer(acceptedIPs=["10.101.1.0/25"]),
            "acceptedIPs 10.101.1.0/25 overlaps this node's own pod CIDR 10.101.1.0/24",
        ),
        (
            peer(acceptedIPs=["10.102.0.0/16"]),
            "acceptedIPs 10.102.0.0/16 overlaps allowedIPs 10.102.1.0/24: a network is either routed to the peer"
            " (allowedIPs) or only accepted from it (acceptedIPs)",
        ),
    ],
)
def test_a_bad_peer_is_named_in_the_error(entry: dict[str, Any], expected: str) -> None:
    assert expected in problems_of({"peers": [entry]})


def test_every_problem_is_reported_at_once() -> None:
    message = problems_of(
        {"peers": [peer("a", publicKey="short"), peer("b", endpoint="1.2.3.4", allowedIPs=["10.103.0.0/16"])]}
    )
    assert "peers[0] (member-2/a): publicKey" in message
    assert "peers[1] (member-2/b): endpoint '1.2.3.4' has no port" in message


def test_peers_must_not_claim_each_others_networks_or_keys() -> None:
    message = problems_of({"peers": [peer("a"), peer("b", allowedIPs=["10.102.0.0/16"], publicKey=key("a"))]})
    assert "peers[1] (member-2/b): publicKey is the same as peers[0] (member-2/a)" in message
    assert "overlaps 10.102.0.0/16 of peers[1] (member-2/b)" in message or "10.102.1.0/24 of peers[0]" in message


def test_accepted_ips_go_to_wireguard_but_are_not_routed() -> None:
    state = parse({"peers": [peer(allowedIPs=["100.96.0.2/32"], acceptedIPs=["10.101.2.0/24", "10.101.2.0/24"])]})
    (only,) = state.peers
    assert [str(n) for n in only.accepted_ips] == ["10.101.2.0/24"]
    assert [str(n) for n in only.wireguard_ips] == ["10.101.2.0/24", "100.96.0.2/32"]
    assert [str(n) for n in state.routed_networks()] == ["100.96.0.2/32"]


def test_an_endpoint_may_lie_inside_accepted_ips_which_are_not_routed() -> None:
    state = parse({"peers": [peer(allowedIPs=["100.96.0.2/32"], acceptedIPs=["172.30.2.0/24"])]})
    assert [str(n) for n in state.peers[0].accepted_ips] == ["172.30.2.0/24"]


def test_a_source_belongs_to_one_peer_whether_routed_or_accepted() -> None:
    message = problems_of(
        {"peers": [peer("a"), peer("b", endpoint="172.30.2.12:51820", allowedIPs=[], acceptedIPs=["10.102.1.128/25"])]}
    )
    assert (
        "peers[1] (member-2/b): acceptedIPs 10.102.1.128/25 overlaps 10.102.1.0/24 of peers[0] (member-2/a)" in message
    )


def test_the_own_proxy_ip_cannot_be_a_peers() -> None:
    message = problems_of({"proxyIPv4": "100.96.0.2", "peers": [peer()]})
    assert "allowedIPs 100.96.0.2/32 overlaps this node's own proxyIPv4 100.96.0.2" in message


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"listenPort": 70000}, "listenPort 70000 is not a port number"),
        ({"proxyIPv4": "100.96.0.300"}, "proxyIPv4: '100.96.0.300' is not an IPv4 address"),
        ({"interface": "a-very-long-interface-name"}, "interface 'a-very-long-interface-name' is not an interface"),
        ({"peers": {"a": 1}}, "peers must be a list"),
        ({"peer": []}, "unknown field 'peer'"),
        ({"podCIDRs": ["10.101.1.1/24"]}, "podCIDRs[0]: '10.101.1.1/24' has host bits set"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_top_level_fields_are_named(state: object, expected: str) -> None:
    assert expected in problems_of(state)


def test_the_state_file_pod_cidrs_are_checked_too() -> None:
    message = problems_of({"podCIDRs": ["10.102.1.0/24"], "peers": [peer()]})
    assert "overlaps this node's own pod CIDR 10.102.1.0/24" in message


def test_endpoint_forms() -> None:
    assert Endpoint.parse("[fd00::1]:51820") == Endpoint(ipaddress.ip_address("fd00::1"), 51820)
    assert str(Endpoint.parse("[fd00::1]:51820")) == "[fd00::1]:51820"
    with pytest.raises(ValueError, match="has no port"):
        Endpoint.parse("fd00::1")


def test_check_key_accepts_what_wg_prints() -> None:
    assert check_key("MkEcVxSuMPKzLGcvAhodowBL2BZdeFs0MS4MIbcgqRc=")
    with pytest.raises(ValueError):
        check_key("MkEcVxSuMPKzLGcvAhodowBL2BZdeFs0MS4MIbcgqRc")


# --- wg dump and the per-peer `wg set` words -------------------------------------------------------


DUMP = (
    "cHJpdmF0ZQ==\tMkEcVxSuMPKzLGcvAhodowBL2BZdeFs0MS4MIbcgqRc=\t51820\toff\n"
    "C8pADh8z9YUDlFoCgyc0ul8YudgKeIymPqJaeK6lrHw=\t(none)\t172.31.0.12:51820\t10.102.1.0/24,100.96.0.2/32\t"
    "1763766000\t564\t656\t25\n"
    "R2b3Zf7aSCbmv08jvdrYbVp2x1S7xIoLuR4C0Q3Hi1s=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
)


def test_parse_dump() -> None:
    device = parse_dump(DUMP)
    assert device.public_key == "MkEcVxSuMPKzLGcvAhodowBL2BZdeFs0MS4MIbcgqRc="
    assert device.listen_port == 51820
    first = device.peers["C8pADh8z9YUDlFoCgyc0ul8YudgKeIymPqJaeK6lrHw="]
    assert first.endpoint == "172.31.0.12:51820"
    assert [str(n) for n in first.allowed_ips] == ["10.102.1.0/24", "100.96.0.2/32"]
    assert (first.latest_handshake, first.rx_bytes, first.tx_bytes, first.persistent_keepalive) == (
        1763766000,
        564,
        656,
        25,
    )
    bare = device.peers["R2b3Zf7aSCbmv08jvdrYbVp2x1S7xIoLuR4C0Q3Hi1s="]
    assert (bare.endpoint, bare.allowed_ips, bare.persistent_keepalive) == (None, (), 0)


def _current(spec_peer: Any, **changes: Any) -> DumpPeer:
    values = {
        "public_key": spec_peer.public_key,
        "endpoint": str(spec_peer.endpoint),
        "allowed_ips": spec_peer.allowed_ips,
        "latest_handshake": 0,
        "rx_bytes": 0,
        "tx_bytes": 0,
        "persistent_keepalive": spec_peer.persistent_keepalive,
    }
    values.update(changes)
    return DumpPeer(**values)


def test_an_unchanged_peer_sends_nothing() -> None:
    (wanted,) = parse({"peers": [peer()]}).peers
    assert peer_set_args(wanted, _current(wanted)) == []
    reordered = _current(wanted, allowed_ips=tuple(reversed(wanted.allowed_ips)))
    assert peer_set_args(wanted, reordered) == []


def test_a_new_peer_sends_everything() -> None:
    (wanted,) = parse({"peers": [peer()]}).peers
    assert peer_set_args(wanted, None) == [
        "peer",
        wanted.public_key,
        "endpoint",
        "172.30.2.11:51820",
        "persistent-keepalive",
        "25",
        "allowed-ips",
        "10.102.1.0/24,100.96.0.2/32",
    ]


def test_an_update_sends_only_what_differs_and_always_the_full_allowed_ips_list() -> None:
    (wanted,) = parse({"peers": [peer()]}).peers
    moved = _current(wanted, endpoint="172.30.2.99:51820")
    assert peer_set_args(wanted, moved) == ["peer", wanted.public_key, "endpoint", "172.30.2.11:51820"]
    shrunk = _current(wanted, allowed_ips=wanted.allowed_ips[:1])
    assert peer_set_args(wanted, shrunk) == [
        "peer",
        wanted.public_key,
        "allowed-ips",
        "10.102.1.0/24,100.96.0.2/32",
    ]
    (accepting,) = parse({"peers": [peer(acceptedIPs=["10.101.2.0/24"])]}).peers
    assert peer_set_args(accepting, _current(wanted)) == [
        "peer",
        wanted.public_key,
        "allowed-ips",
        "10.101.2.0/24,10.102.1.0/24,100.96.0.2/32",
    ]
    assert peer_set_args(accepting, _current(accepting, allowed_ips=accepting.wireguard_ips)) == []
    (off,) = parse({"peers": [peer(persistentKeepaliveSeconds=0)]}).peers
    assert peer_set_args(off, _current(wanted)) == ["peer", wanted.public_key, "persistent-keepalive", "off"]
