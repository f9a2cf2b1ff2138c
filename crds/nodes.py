"""BalancingNode: what one node's agent has programmed, written by that agent (status only).

The member controller reads these to make a policy's `Ready` honest: a policy is Ready when every
node it targets reports it programmed at the policy's current generation.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from crds._base import ApiModel, Conditions, DnsSubdomain, IPv4, KubeObject, PrinterColumn, Timestamp
from crds.federation import MAX_PEERS, TunnelPeer, WireGuardPublicKey

PolicyKind = Literal["BalancingPolicy", "LocalRedirectPolicy"]
PolicyState = Literal["Programmed", "NodeNotSelected", "Conflict", "ServiceNotFound", "Disabled", "Invalid", "Failed"]
MAX_NODE_POLICIES = 4096


class NodeTunnel(ApiModel):
    """The node's share of the WireGuard mesh, as the hub planned it (the member controller copies it
    from the node's NodeTunnelEndpoint status; the agent applies it)."""

    proxy_ipv4: IPv4 | None = Field(default=None, alias="proxyIPv4", description="The node's proxy IPv4.")
    peers: Annotated[list[TunnelPeer], Field(max_length=MAX_PEERS)] = Field(default_factory=list)


class BalancingNodeSpec(ApiModel):
    """Written by the member controller: what the node's agent must apply besides its cluster's Services
    and policies. The object's name is the node's name."""

    tunnel: NodeTunnel | None = Field(default=None, description="The node's WireGuard mesh share, when joined.")


class PolicyOnNode(ApiModel):
    """One policy as this node's agent programmed it."""

    kind: PolicyKind
    name: DnsSubdomain
    generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = Field(
        default=None, description="The policy's metadata.generation that was programmed."
    )
    state: PolicyState = Field(description="Programmed, or why the node programs nothing for it.")
    frontends: Annotated[int, Field(ge=0)] = 0
    backends: Annotated[int, Field(ge=0)] = 0
    message: Annotated[str, Field(max_length=1024)] | None = None


class NodeProblem(ApiModel):
    """Something this node could not program, and why; the rest of the node is unaffected."""

    source: Annotated[str, Field(max_length=512)] = Field(
        description="What it is about: `service:NAMESPACE/NAME`, `policies`, or `nodes`."
    )
    message: Annotated[str, Field(max_length=1024)]


MAX_NODE_PROBLEMS = 64


class BalancingNodeStatus(ApiModel):
    last_sync_time: Timestamp | None = Field(default=None, description="When the datapath was last synced.")
    wireguard_public_key: WireGuardPublicKey | None = Field(
        default=None, description="The node's WireGuard public key (its private key never leaves the node)."
    )
    agent_version: Annotated[str, Field(max_length=64)] | None = None
    frontends: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Frontends programmed.")
    backends: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Backend slots in use.")
    policies: (
        Annotated[
            list[PolicyOnNode],
            Field(
                max_length=MAX_NODE_POLICIES,
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["kind", "name"]},
            ),
        ]
        | None
    ) = None
    problems: Annotated[list[NodeProblem], Field(max_length=MAX_NODE_PROBLEMS)] | None = Field(
        default=None, description="What could not be programmed (at most 64 listed)."
    )
    conditions: Conditions | None = Field(
        default=None, description="Ready: the datapath holds the desired state (False names what could not be)."
    )


class BalancingNode(KubeObject):
    """The socket load balancer of one node, as its agent reports it. metadata.name is the node's name."""

    kind_name: ClassVar[str] = "BalancingNode"
    plural: ClassVar[str] = "balancingnodes"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    short_names: ClassVar[tuple[str, ...]] = ("bnode",)
    categories: ClassVar[tuple[str, ...]] = ("balancing",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Ready", json_path='.status.conditions[?(@.type=="Ready")].status', description="Synced"),
        PrinterColumn(name="Frontends", json_path=".status.frontends", type="integer", description="Frontends"),
        PrinterColumn(name="Backends", json_path=".status.backends", type="integer", description="Backend slots"),
        PrinterColumn(name="Synced", json_path=".status.lastSyncTime", type="date", description="Last sync"),
        PrinterColumn(name="Age", json_path=".metadata.creationTimestamp", type="date"),
    )

    kind: Literal["BalancingNode"] = "BalancingNode"
    spec: BalancingNodeSpec = Field(default_factory=BalancingNodeSpec)
    status: BalancingNodeStatus | None = None
