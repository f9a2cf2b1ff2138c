"""Running `wg` (wireguard-tools) against a node's interface, and reading its state back.

Kernel WireGuard is configured over netlink, so `wg` only has to run in the node's network namespace.
wireguard-go is configured over a unix socket in /var/run/wireguard, a directory every wireguard-go on
the machine would share. Each node therefore gets a private one: `wg` and wireguard-go both run in a
fresh mount namespace in which the node's `tunnel/run` directory is bind-mounted over /run/wireguard.
The socket is one inode, so every such namespace reaches the same daemon; nothing leaks to the host.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datapath.paths import setting
from datapath.tunnel.errors import TunnelError
from datapath.tunnel.spec import IPNetwork, PeerSpec

WIREGUARD_RUN_DIR = Path("/run/wireguard")  # /var/run is a symlink to /run
# Bind the node's socket directory over /run/wireguard, then become the command.
_PRIVATE_RUN_DIR_LAUNCHER = 'mount --bind "$1" /run/wireguard || exit 1; shift; exec "$@"'


def wg_binary() -> str:
    configured = setting("BALANCING_WG")
    found = configured or shutil.which("wg")
    if not found:
        raise TunnelError("wg (wireguard-tools) not found on PATH; install the wireguard-tools package")
    return found


@dataclass(frozen=True)
class NamespaceCommand:
    """Builds argv that runs a program in a node's network namespace, optionally with a private run dir."""

    netns: str | None
    run_dir: Path | None = None  # set for wireguard-go: bind-mounted over /run/wireguard

    def argv(self, program: Sequence[str]) -> list[str]:
        prefix: list[str] = []
        if self.netns:
            prefix = ["nsenter", f"--net=/run/netns/{self.netns}", "--"]
        if self.run_dir is not None:
            WIREGUARD_RUN_DIR.mkdir(parents=True, exist_ok=True)  # the mount point, on the host
            prefix += ["unshare", "--mount", "--propagation", "private", "--"]
            prefix += ["sh", "-c", _PRIVATE_RUN_DIR_LAUNCHER, "sh", str(self.run_dir)]
        return [*prefix, *program]


@dataclass(frozen=True)
class DumpPeer:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[IPNetwork, ...]
    latest_handshake: int  # unix seconds; 0 is never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int  # 0 is off


@dataclass(frozen=True)
class DumpDevice:
    public_key: str | None
    listen_port: int
    peers: dict[str, DumpPeer] = field(default_factory=dict)


def parse_dump(text: str) -> DumpDevice:
    """Parse `wg show IFACE dump`: one interface line, then one tab-separated line per peer."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise TunnelError("wg show dump printed nothing")
    head = lines[0].split("\t")
    device = DumpDevice(public_key=None if head[1] == "(none)" else head[1], listen_port=int(head[2]))
    for line in lines[1:]:
        cols = line.split("\t")
        allowed = () if cols[3] == "(none)" else tuple(ipaddress.ip_network(item) for item in cols[3].split(","))
        device.peers[cols[0]] = DumpPeer(
            public_key=cols[0],
            endpoint=None if cols[2] == "(none)" else cols[2],
            allowed_ips=allowed,
            latest_handshake=int(cols[4]),
            rx_bytes=int(cols[5]),
            tx_bytes=int(cols[6]),
            persistent_keepalive=0 if cols[7] == "off" else int(cols[7]),
        )
    return device


@dataclass(frozen=True)
class WgControl:
    """`wg` for one interface of one node."""

    interface: str
    command: NamespaceCommand

    def run(self, args: Sequence[str], *, input: str | None = None) -> str:
        argv = self.command.argv([wg_binary(), *args])
        result = subprocess.run(argv, input=input, capture_output=True, text=True)
        if result.returncode != 0:
            raise TunnelError(f"wg {' '.join(args[:3])} ... on {self.interface} failed: {result.stderr.strip()}")
        return result.stdout

    def dump(self) -> DumpDevice:
        return parse_dump(self.run(["show", self.interface, "dump"]))

    def set(self, args: Sequence[str]) -> None:
        if args:
            self.run(["set", self.interface, *args])


def peer_set_args(peer: PeerSpec, current: DumpPeer | None) -> list[str]:
    """`wg set` words that bring one peer from `current` (None: absent) to `peer`; [] when equal.

    Only what differs is sent. `allowed-ips` replaces the peer's whole list, so it is always the full list:
    the peer's allowed (routed) and accepted IPs together, the sources WireGuard takes from it.
    """
    words: list[str] = []
    endpoint = str(peer.endpoint)
    if current is None or current.endpoint != endpoint:
        words += ["endpoint", endpoint]
    if current is None or current.persistent_keepalive != peer.persistent_keepalive:
        words += ["persistent-keepalive", str(peer.persistent_keepalive) if peer.persistent_keepalive else "off"]
    wanted = peer.wireguard_ips
    if (current is None and wanted) or (current is not None and set(current.allowed_ips) != set(wanted)):
        words += ["allowed-ips", ",".join(str(net) for net in wanted)]
    return ["peer", peer.public_key, *words] if words else []
