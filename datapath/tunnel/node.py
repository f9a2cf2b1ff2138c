"""Which node the tunnel verbs act on: its network namespace, state directory, cgroup and pod CIDRs.

On a real node the tunnel lives in the host's network namespace and keeps its state in
/var/lib/balancing. In the lab, each node is a network namespace; the lab writes one index file per node,
`$BALANCING_NODE_INDEX_DIR/<node>.json` (datapath.paths), which `--node NODE` reads.
datapath never imports the lab: the index file is the whole contract (see docs/tunnels.md).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from datapath.paths import HOST_STATE_DIR, node_index_dir
from datapath.tunnel.errors import TunnelError
from datapath.tunnel.spec import IPAddress, IPNetwork

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class TunnelNode:
    name: str
    netns: str | None  # None: the host's own network namespace
    state_dir: Path  # private to this node; the tunnel keeps keys and runtime files in state_dir/tunnel
    cgroup: Path | None = None  # where wireguard-go runs (its `system` child when there is one)
    pod_cidrs: tuple[IPNetwork, ...] = ()
    underlay_ip: IPAddress | None = None

    @property
    def tunnel_dir(self) -> Path:
        return self.state_dir / "tunnel"

    @property
    def netns_path(self) -> Path | None:
        return NETNS_DIR / self.netns if self.netns else None

    def check_netns(self) -> None:
        if self.netns and not (NETNS_DIR / self.netns).exists():
            raise TunnelError(f"node {self.name}: network namespace {self.netns!r} does not exist")


def resolve_node(
    name: str | None,
    *,
    netns: str | None = None,
    state_dir: Path | None = None,
    cgroup: Path | None = None,
) -> TunnelNode:
    """A node from its lab index file, from explicit options, or the local host.

    Explicit `netns`/`state_dir`/`cgroup` override what the index file says.
    """
    record: dict[str, object] = {}
    if name:
        path = node_index_dir() / f"{name}.json"
        if path.exists():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise TunnelError(f"node {name}: cannot read its index file {path}: {error}") from None
            if not isinstance(loaded, dict):
                raise TunnelError(f"node {name}: index file {path} is not a JSON object")
            record = loaded
        elif state_dir is None and name != socket.gethostname():
            raise TunnelError(
                f"node {name!r} is unknown: no index file {path} (is the lab up?), and it is not this host "
                f"({socket.gethostname()}); pass --state-dir (and --netns) to use a node without an index file"
            )
    node_name = name or socket.gethostname()
    return TunnelNode(
        name=node_name,
        netns=netns if netns is not None else _optional_str(record.get("netns")),
        state_dir=state_dir or Path(str(record.get("state_dir") or HOST_STATE_DIR)),
        cgroup=cgroup or (Path(str(record["cgroup"])) if record.get("cgroup") else None),
        pod_cidrs=_pod_cidrs(node_name, record),
        underlay_ip=ipaddress.ip_address(str(record["underlay_ip"])) if record.get("underlay_ip") else None,
    )


def _optional_str(value: object) -> str | None:
    return str(value) if value else None


def _pod_cidrs(node: str, record: dict[str, object]) -> tuple[IPNetwork, ...]:
    raw: list[object] = []
    if record.get("pod_cidr"):
        raw.append(record["pod_cidr"])
    extra = record.get("pod_cidrs")
    if isinstance(extra, list):
        raw.extend(extra)
    try:
        return tuple(ipaddress.ip_network(str(item)) for item in raw)
    except ValueError as error:
        raise TunnelError(f"node {node}: index file has a bad pod CIDR: {error}") from None
