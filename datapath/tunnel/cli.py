"""`balancing datapath tunnel pubkey|apply|status|down|rotate-key --node NODE ...`"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from datapath.tunnel.errors import InvalidTunnelState

if TYPE_CHECKING:  # the manager pulls in pyroute2: import it only when a tunnel verb runs
    from datapath.tunnel.manager import TunnelManager, TunnelStatus


def register(datapath_subparsers: Any) -> None:
    parser: argparse.ArgumentParser = datapath_subparsers.add_parser(
        "tunnel",
        help="WireGuard mesh on this node: keys, interface, peers, routes, node proxy IPv4",
        description="WireGuard mesh on a node. See docs/tunnels.md for the state file format.",
    )
    verbs = parser.add_subparsers(dest="tunnel_command", required=True, metavar="VERB")

    pubkey = verbs.add_parser("pubkey", help="create the node's keypair on first use and print its public key")
    _node_options(pubkey)
    pubkey.set_defaults(handler=_pubkey)

    apply = verbs.add_parser("apply", help="apply a desired state file: proxy IP, listen port, peers")
    _node_options(apply)
    apply.add_argument("state_file", metavar="STATE_FILE", help="YAML or JSON desired state ('-' reads stdin)")
    apply.set_defaults(handler=_apply)

    status = verbs.add_parser("status", help="interface, proxy IP, and per peer: latest handshake, rx/tx")
    _node_options(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_status)

    down = verbs.add_parser("down", help="remove the interface, its peers and routes (the keypair stays)")
    _node_options(down)
    down.set_defaults(handler=_down)

    rotate = verbs.add_parser(
        "rotate-key", help="replace the node's keypair on the running interface; print the new public key"
    )
    _node_options(rotate)
    rotate.set_defaults(handler=_rotate)


def _node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node", help="node name; a lab node is looked up in $BALANCING_NODE_INDEX_DIR (default: this host)"
    )
    parser.add_argument("--netns", help="network namespace of the node (overrides the node index)")
    parser.add_argument("--state-dir", type=Path, help="private state directory of the node (keys live here)")
    parser.add_argument("--cgroup", type=Path, help="cgroup that wireguard-go runs in")


def _manager(args: argparse.Namespace) -> TunnelManager:
    from datapath.tunnel.manager import TunnelManager
    from datapath.tunnel.node import resolve_node

    return TunnelManager(resolve_node(args.node, netns=args.netns, state_dir=args.state_dir, cgroup=args.cgroup))


def _pubkey(args: argparse.Namespace) -> int:
    print(_manager(args).pubkey())
    return 0


def _apply(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.state_file == "-":
        state = manager.parse(_load_stdin(), source="<stdin>")
    else:
        state = manager.load(Path(args.state_file))
    result = manager.apply(state)
    print(f"{manager.node.name}: {state.interface}: {result.summary()}")
    return 0


def _load_stdin() -> object:
    try:
        return yaml.safe_load(sys.stdin.read())
    except yaml.YAMLError as error:
        raise InvalidTunnelState("<stdin>", [f"not YAML or JSON: {error}".replace("\n", " ")]) from None


def _status(args: argparse.Namespace) -> int:
    status = _manager(args).status()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
    return 0


def _down(args: argparse.Namespace) -> int:
    manager = _manager(args)
    removed = manager.down()
    print(f"{manager.node.name}: tunnel {'removed' if removed else 'was not up'}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    _old, new = _manager(args).rotate_key()
    print(new)
    return 0


def format_status(status: TunnelStatus) -> str:
    if not status.up:
        return f"node {status.node}: tunnel down (public key {status.public_key or 'not created yet'})"
    lines = [
        f"node {status.node}: {status.interface} up ({status.implementation}"
        + (f", wireguard-go pid {status.pid}" if status.pid else "")
        + ")",
        f"  public key: {status.public_key}",
        f"  listen port: {status.listen_port}",
        f"  proxy IPv4: {status.proxy_ipv4 or '-'}",
        f"  routes: {', '.join(status.tunnel_routes) or '-'}",
    ]
    if status.fenced_routes:
        lines.append(f"  unreachable (removed peers): {', '.join(status.fenced_routes)}")
    header = ("PEER", "PUBLIC KEY", "ENDPOINT", "ALLOWED IPS", "ACCEPTED IPS", "HANDSHAKE", "RX", "TX")
    rows = [header]
    for peer in status.peers:
        age = f"{peer.handshake_age_seconds:.0f}s ago" if peer.handshake_age_seconds is not None else "never"
        rows.append(
            (
                peer.label or "-",
                peer.public_key[:12] + "...",
                peer.endpoint or "-",
                ",".join(peer.allowed_ips) or "-",
                ",".join(peer.accepted_ips) or "-",
                age,
                str(peer.rx_bytes),
                str(peer.tx_bytes),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
