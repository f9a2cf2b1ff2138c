"""Federation kinds: the hub-side contract between member clusters and the hub (all namespaced).

Who writes what (see docs/api.md for the full picture):
- a member writes, in its own hub namespace, its MemberCluster heartbeat, its ExportedServices,
  FederatedEndpointSlices, TCPLoadBalancers and one NodeTunnelEndpoint spec per node;
- the hub writes every verdict (status) and, in the catalogue namespace, the FederatedServices and
  the FederatedEndpointSlice copies; in NodeTunnelEndpoint status, the proxy IPv4 and the peer set.
No kind carries a private key: WireGuard private keys never leave their node. No kind is named like
an MCS kind (crds.mcs), so both sets install on one cluster (a hub that is also a member).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from crds._base import (
    AGE_COLUMN,
    DNS_LABEL_PATTERN,
    LIST_SET,
    MAX_PORTS,
    ApiModel,
    Conditions,
    Dns1035Label,
    DnsLabel,
    DnsSubdomain,
    Int,
    IPv4,
    IPv4CIDR,
    KubeObject,
    ObservedGeneration,
    PortName,
    PrinterColumn,
    Protocol,
    Timestamp,
    cel_quote,
    check_ipv4,
    condition_column,
    find_condition,
    full_match,
    list_map,
    rule,
    unique_by,
    validations,
)

SOURCE_CLUSTER_LABEL = "balancing.elf.io/source-cluster"
SERVICE_NAME_LABEL = "balancing.elf.io/service-name"
SERVICE_NAMESPACE_LABEL = "balancing.elf.io/service-namespace"
POLICY_NAME_LABEL = "balancing.elf.io/policy-name"
# Propagation stamps (RFC 3339 with microseconds, `format_stamp`): the member sets CHANGED_AT on an
# ExportedService or FederatedEndpointSlice when the change it carries happened in its cluster; the
# hub keeps it on its catalogue copy and adds SYNCED_AT, when it wrote the copy.
CHANGED_AT_ANNOTATION = "balancing.elf.io/changed-at"
SYNCED_AT_ANNOTATION = "balancing.elf.io/synced-at"
# Hub namespaces: a member's is labelled with its name; the catalogue is labelled "true".
MEMBER_CLUSTER_LABEL = "balancing.elf.io/member-cluster"
CATALOGUE_LABEL = "balancing.elf.io/catalogue"
DEFAULT_CATALOGUE_NAMESPACE = "balancing-federation"

FEDERATION_CATEGORIES = ("balancing", "balancing-federation")
MAX_ENDPOINTS = 1000  # as EndpointSlice
MAX_PEERS = 4096
MAX_POD_CIDRS = 8
MAX_ALLOWED_IPS = 16

ClusterName = Annotated[DnsLabel, Field(description="Name of a member cluster (a DNS label).")]
PortNumberInt = Annotated[Int, Field(ge=1, le=65535)]




# In CEL, `namespace` is a reserved word: the apiserver exposes a field of that name as `__namespace__`.
def _name_rule(expected: str, example: str) -> tuple[dict[str, str], ...]:
    """Root CEL rule: metadata.name must equal a composition of spec fields (unique per object)."""
    return (
        rule(
            f"self.metadata.name == {expected}",
            message_expression=(
                f"'must be {example}, that is \"' + ({expected}) + '\", not \"' + self.metadata.name + '\"'"
            ),
            field_path=".metadata.name",
        ),
    )


def _check_name(actual: str | None, expected: str, example: str) -> None:
    if actual is not None and actual != expected:
        raise ValueError(f'metadata.name must be {example}, that is "{expected}", not "{actual}"')


def format_stamp(moment: datetime) -> str:
    """A propagation stamp: RFC 3339 in UTC with microseconds, e.g. 2026-01-01T00:00:00.250000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str | None) -> datetime | None:
    """The time in a propagation stamp, or None when it is missing or unreadable (a stamp is advisory)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- MemberCluster -------------------------------------------------------------------------------------


class MemberClusterSpec(ApiModel):
    """Registration of a member cluster with the hub, and its liveness contract."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "self.heartbeatTimeoutSeconds > self.heartbeatPeriodSeconds",
                "heartbeatTimeoutSeconds must be greater than heartbeatPeriodSeconds",
                field_path=".heartbeatTimeoutSeconds",
            )
        )
    )

    pod_cidrs: (
        Annotated[list[IPv4CIDR], Field(max_length=MAX_POD_CIDRS, json_schema_extra=LIST_SET), unique_by()] | None
    ) = Field(default=None, alias="podCIDRs", description="Pod CIDRs of the cluster.")
    service_cidr: IPv4CIDR | None = Field(default=None, alias="serviceCIDR", description="Service CIDR.")
    heartbeat_period_seconds: Annotated[Int, Field(ge=1, le=3600)] = Field(
        default=10, description="How often the member writes status.lastHeartbeatTime."
    )
    heartbeat_timeout_seconds: Annotated[Int, Field(ge=2, le=86400)] = Field(
        default=40,
        description=("After this long without a heartbeat the cluster is not Ready and its endpoints expire."),
    )

    @model_validator(mode="after")
    def _timeout_after_period(self) -> MemberClusterSpec:
        if self.heartbeat_timeout_seconds <= self.heartbeat_period_seconds:
            raise ValueError("heartbeatTimeoutSeconds must be greater than heartbeatPeriodSeconds")
        return self


class MemberClusterStatus(ApiModel):
    """Liveness and inventory. The member writes lastHeartbeatTime; the hub writes the conditions."""

    last_heartbeat_time: Timestamp | None = Field(default=None, description="Last heartbeat of the member.")
    member_version: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Version of the member controller."
    )
    node_count: Annotated[Int, Field(ge=0)] | None = None
    exported_services: Annotated[Int, Field(ge=0)] | None = None
    cluster_id: DnsLabel | None = Field(
        default=None,
        alias="clusterID",
        description=(
            "The cluster's id in the clusterset, written by the hub (ClusterProperty cluster.clusterset.k8s.io)."
        ),
    )
    observed_generation: ObservedGeneration | None = None
    conditions: Conditions | None = Field(
        default=None,
        description=(
            "Written by the hub. Ready: heartbeats are fresh (False/HeartbeatExpired after the timeout)."
            " Valid: the registration is consistent (False/ClusterMismatch, False/PodCIDROverlap)."
        ),
    )


class MemberCluster(KubeObject):
    """A member cluster of the federation. metadata.name is the cluster name."""

    kind_name: ClassVar[str] = "MemberCluster"
    plural: ClassVar[str] = "memberclusters"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("mcl",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    name_max_length: ClassVar[int | None] = 63
    root_rules: ClassVar[tuple[dict[str, str], ...]] = (
        rule(
            f"self.metadata.name.matches({cel_quote(DNS_LABEL_PATTERN)})",
            message_expression=(
                "'must be a cluster name: a DNS label of lowercase letters, digits and \\'-\\', not \"'"
                " + self.metadata.name + '\"'"
            ),
            field_path=".metadata.name",
        ),
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        condition_column(),
        PrinterColumn(
            name="Heartbeat", json_path=".status.lastHeartbeatTime", type="date", description="Last heartbeat"
        ),
        PrinterColumn(name="Nodes", json_path=".status.nodeCount", type="integer", description="Nodes"),
        PrinterColumn(
            name="Exports", json_path=".status.exportedServices", type="integer", description="Exported services"
        ),
        AGE_COLUMN,
    )

    kind: Literal["MemberCluster"] = "MemberCluster"
    spec: MemberClusterSpec = Field(default_factory=MemberClusterSpec)
    status: MemberClusterStatus | None = None

    @model_validator(mode="after")
    def _name_is_a_cluster_name(self) -> MemberCluster:
        name = self.metadata.name
        if name is not None and (len(name) > 63 or not full_match(DNS_LABEL_PATTERN, name)):
            raise ValueError(f"metadata.name must be a cluster name (a DNS label), not {name!r}")
        return self

    def is_alive(self, now: datetime) -> bool:
        """Whether the last heartbeat is younger than the timeout (the hub's liveness test)."""
        if self.status is None or self.status.last_heartbeat_time is None:
            return False
        timeout = timedelta(seconds=self.spec.heartbeat_timeout_seconds)
        return now - self.status.last_heartbeat_time < timeout


# --- services: ExportedService (per cluster) and FederatedService (aggregate) ----------------------------


def _check_service_ports(ports: list[ServicePort]) -> list[ServicePort]:
    if len(ports) > 1 and any(port.name is None for port in ports):
        raise ValueError("every port needs a name when more than one port is listed")
    return ports


class ServicePort(ApiModel):
    """A port of an exported Service."""

    name: PortName | None = None
    port: PortNumberInt
    protocol: Protocol = "TCP"
    target_port: Annotated[str, Field(max_length=15)] | None = Field(
        default=None, description="The Service's targetPort, a number or a port name (informational)."
    )


ServicePorts = Annotated[
    list[ServicePort],
    Field(
        min_length=1,
        max_length=MAX_PORTS,
        json_schema_extra={
            **list_map("port", "protocol"),
            **validations(
                rule(
                    "self.size() <= 1 || self.all(p, has(p.name))",
                    "every port needs a name when more than one port is listed",
                )
            ),
        },
    ),
    unique_by("port", "protocol"),
    AfterValidator(_check_service_ports),
]
ServiceType = Literal["ClusterSetIP", "Headless"]
SessionAffinity = Literal["None", "ClientIP"]
InternalTrafficPolicy = Literal["Cluster", "Local"]
ClusterAffinity = Literal["none", "local", "remote"]


class ServiceProperties(ApiModel):
    """What an exported Service looks like from the federation; shared by export and aggregate."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "self.sessionAffinity == 'ClientIP' || !has(self.sessionAffinityTimeoutSeconds)",
                "sessionAffinityTimeoutSeconds is only allowed with sessionAffinity ClientIP",
                field_path=".sessionAffinityTimeoutSeconds",
            )
        )
    )

    namespace: DnsLabel = Field(description="Namespace of the Service.")
    service_name: Dns1035Label = Field(description="Name of the Service.")
    type: ServiceType = Field(default="ClusterSetIP", description="ClusterSetIP (a VIP) or Headless.")
    ports: ServicePorts
    session_affinity: SessionAffinity = Field(default="None", description="None or ClientIP, from the Service.")
    session_affinity_timeout_seconds: Annotated[Int, Field(ge=1, le=86400)] | None = None
    internal_traffic_policy: InternalTrafficPolicy = Field(
        default="Cluster", description="Cluster, or Local: only endpoints on the client's node (from the Service)."
    )
    affinity: ClusterAffinity = Field(
        default="none",
        description="Cluster affinity: local prefers this cluster's backends, remote prefers other clusters'.",
    )

    @model_validator(mode="after")
    def _affinity_timeout(self) -> ServiceProperties:
        if self.session_affinity != "ClientIP" and self.session_affinity_timeout_seconds is not None:
            raise ValueError("sessionAffinityTimeoutSeconds is only allowed with sessionAffinity ClientIP")
        return self


class ExportedServiceSpec(ServiceProperties):
    """A Service that a member cluster exports to the federation: its MCS ServiceExport, as the member's
    controller publishes it on the hub."""

    cluster: ClusterName
    exported_at: Timestamp | None = Field(
        default=None,
        description=(
            "creationTimestamp of the member's MCS ServiceExport: the oldest export wins conflicts."
            " When unset, this object's own creationTimestamp counts."
        ),
    )


class ExportStatus(ApiModel):
    """Written by the hub. Valid: the export is accepted (False/ClusterMismatch when spec.cluster is not
    the namespace's cluster). Conflict: its properties disagree with the oldest export of the same
    Service (MCS reasons; the oldest export wins, ports are merged as a union). Ready: merged into the
    catalogue (False/HeartbeatExpired while the member is silent)."""

    observed_generation: ObservedGeneration | None = None
    conditions: Conditions | None = None


class ExportedService(KubeObject):
    """A member's exported Service. metadata.name is CLUSTER.NAMESPACE.SERVICE."""

    kind_name: ClassVar[str] = "ExportedService"
    plural: ClassVar[str] = "exportedservices"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("expsvc",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    root_rules: ClassVar[tuple[dict[str, str], ...]] = _name_rule(
        "self.spec.cluster + '.' + self.spec.__namespace__ + '.' + self.spec.serviceName",
        "CLUSTER.NAMESPACE.SERVICE",
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Cluster", json_path=".spec.cluster", description="Source cluster"),
        PrinterColumn(name="Svc-Namespace", json_path=".spec.namespace", description="Service namespace"),
        PrinterColumn(name="Service", json_path=".spec.serviceName", description="Service name"),
        condition_column("Valid"),
        condition_column("Conflict"),
        condition_column(),
        AGE_COLUMN,
    )

    kind: Literal["ExportedService"] = "ExportedService"
    spec: ExportedServiceSpec
    status: ExportStatus | None = None

    @staticmethod
    def object_name(cluster: str, namespace: str, service: str) -> str:
        return f"{cluster}.{namespace}.{service}"

    @model_validator(mode="after")
    def _name(self) -> ExportedService:
        spec = self.spec
        expected = self.object_name(spec.cluster, spec.namespace, spec.service_name)
        _check_name(self.metadata.name, expected, "CLUSTER.NAMESPACE.SERVICE")
        return self


class FederatedServiceSpec(ServiceProperties):
    """The federation-wide view of a Service exported by one or more clusters (like MCS ServiceImport)."""

    ips: Annotated[list[IPv4], Field(max_length=4, json_schema_extra=LIST_SET), unique_by()] | None = Field(
        default=None, description="Federation VIPs allocated by the hub (ClusterSetIP only)."
    )


class SourceCluster(ApiModel):
    cluster: ClusterName


class FederatedServiceStatus(ApiModel):
    observed_generation: ObservedGeneration | None = None
    clusters: (
        Annotated[
            list[SourceCluster],
            Field(max_length=1024, json_schema_extra=list_map("cluster")),
            unique_by("cluster"),
        ]
        | None
    ) = Field(default=None, description="Clusters whose export is merged into this service.")
    conditions: Conditions | None = Field(
        default=None,
        description=(
            "Ready: a live cluster exports it and (ClusterSetIP) its address is allocated"
            " (False/NoLiveClusters, False/IPPoolExhausted)."
        ),
    )


class FederatedService(KubeObject):
    """Aggregate of the exports of one Service, written by the hub. metadata.name is NAMESPACE.SERVICE."""

    kind_name: ClassVar[str] = "FederatedService"
    plural: ClassVar[str] = "federatedservices"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("fsvc",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    root_rules: ClassVar[tuple[dict[str, str], ...]] = _name_rule(
        "self.spec.__namespace__ + '.' + self.spec.serviceName", "NAMESPACE.SERVICE"
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Svc-Namespace", json_path=".spec.namespace", description="Service namespace"),
        PrinterColumn(name="Service", json_path=".spec.serviceName", description="Service name"),
        PrinterColumn(name="Type", json_path=".spec.type", description="ClusterSetIP or Headless"),
        PrinterColumn(name="IP", json_path=".spec.ips[0]", description="Federation VIP"),
        condition_column(),
        AGE_COLUMN,
    )

    kind: Literal["FederatedService"] = "FederatedService"
    spec: FederatedServiceSpec
    status: FederatedServiceStatus | None = None

    @staticmethod
    def object_name(namespace: str, service: str) -> str:
        return f"{namespace}.{service}"

    @model_validator(mode="after")
    def _name(self) -> FederatedService:
        expected = self.object_name(self.spec.namespace, self.spec.service_name)
        _check_name(self.metadata.name, expected, "NAMESPACE.SERVICE")
        return self


# --- FederatedEndpointSlice ----------------------------------------------------------------------------


class ServiceReference(ApiModel):
    namespace: DnsLabel
    name: Dns1035Label


class PolicyReference(ApiModel):
    kind: Literal["BalancingPolicy", "LocalRedirectPolicy"] = "BalancingPolicy"
    name: DnsSubdomain


class HostPort(ApiModel):
    port: PortNumberInt
    protocol: Protocol = "TCP"


class PodReference(ApiModel):
    namespace: DnsLabel
    name: DnsSubdomain


class FederatedEndpoint(ApiModel):
    """One backend pod of a source cluster, with what each redirect mode needs to reach it."""

    addresses: Annotated[
        list[IPv4], Field(min_length=1, max_length=4, json_schema_extra=LIST_SET), unique_by()
    ] = Field(description="Pod IPv4 addresses.")
    ready: bool = Field(default=True, description="Whether the pod is Ready.")
    node_name: DnsSubdomain | None = Field(default=None, description="Node of the pod.")
    node_ip: IPv4 | None = Field(default=None, alias="nodeIP", description="Underlay IP of the node (hostPort).")
    node_proxy_ipv4: IPv4 | None = Field(
        default=None, alias="nodeProxyIPv4", description="The node's proxy IPv4 (nodeProxy)."
    )
    host_ports: (
        Annotated[
            list[HostPort],
            Field(max_length=MAX_PORTS, json_schema_extra=list_map("port", "protocol")),
            unique_by("port", "protocol"),
        ]
        | None
    ) = Field(default=None, description="hostPorts the pod declares.")
    zone: Annotated[str, Field(max_length=63)] | None = None
    target_ref: PodReference | None = Field(default=None, description="The pod.")


class EndpointPort(ApiModel):
    name: PortName | None = None
    port: PortNumberInt
    protocol: Protocol = "TCP"


ONE_SOURCE_RULE = rule(
    "has(self.service) != has(self.policy)",
    "exactly one of service or policy must be set",
)


class FederatedEndpointSliceSpec(ApiModel):
    """Endpoints that a source cluster contributes to an exported Service or to a BalancingPolicy."""

    model_config = ConfigDict(json_schema_extra=validations(ONE_SOURCE_RULE))

    cluster: ClusterName = Field(description="The source cluster (also in label balancing.elf.io/source-cluster).")
    service: ServiceReference | None = Field(default=None, description="The exported Service they back.")
    policy: PolicyReference | None = Field(
        default=None, description="The policy whose endpointSelector selected them in the source cluster."
    )
    address_type: Literal["IPv4"] = Field(default="IPv4", description="Only IPv4 is supported.")
    ports: (
        Annotated[
            list[EndpointPort],
            Field(max_length=MAX_PORTS, json_schema_extra=list_map("port", "protocol")),
            unique_by("port", "protocol"),
        ]
        | None
    ) = Field(default=None, description="Endpoint (target) ports, as in an EndpointSlice.")
    endpoints: Annotated[list[FederatedEndpoint], Field(max_length=MAX_ENDPOINTS)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> FederatedEndpointSliceSpec:
        if (self.service is None) == (self.policy is None):
            raise ValueError(ONE_SOURCE_RULE["message"])
        return self


class FederatedEndpointSlice(KubeObject):
    """Per-cluster endpoints, labelled with their source cluster (MCS-style imported EndpointSlice).

    metadata.name starts with `CLUSTER.`, so the hub's copies of every member's slices share the
    catalogue namespace under their own names without two clusters ever colliding.
    """

    kind_name: ClassVar[str] = "FederatedEndpointSlice"
    plural: ClassVar[str] = "federatedendpointslices"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("fes",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    root_rules: ClassVar[tuple[dict[str, str], ...]] = (
        rule(
            "self.metadata.name.startsWith(self.spec.cluster + '.')",
            message_expression=(
                "'must start with CLUSTER., that is \"' + self.spec.cluster + '.\", not \"' + self.metadata.name + '\"'"
            ),
            field_path=".metadata.name",
        ),
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Cluster", json_path=".spec.cluster", description="Source cluster"),
        PrinterColumn(name="Service", json_path=".spec.service.name", description="Exported Service"),
        PrinterColumn(name="Policy", json_path=".spec.policy.name", description="BalancingPolicy"),
        AGE_COLUMN,
    )

    kind: Literal["FederatedEndpointSlice"] = "FederatedEndpointSlice"
    spec: FederatedEndpointSliceSpec

    @model_validator(mode="after")
    def _name(self) -> FederatedEndpointSlice:
        name, prefix = self.metadata.name, f"{self.spec.cluster}."
        if name is not None and not name.startswith(prefix):
            raise ValueError(f'metadata.name must start with CLUSTER., that is "{prefix}", not "{name}"')
        return self


# --- TCPLoadBalancer (KubeLB) --------------------------------------------------------------------------


class LoadBalancerPort(ApiModel):
    """A port of the external load balancer and the port it forwards to on every endpoint."""

    name: PortName | None = None
    port: PortNumberInt = Field(description="Port on the allocated address.")
    upstream_port: PortNumberInt = Field(description="Port on the endpoints, usually the Service's NodePort.")
    protocol: Protocol = "TCP"


class LoadBalancerEndpoint(ApiModel):
    address: IPv4 = Field(description="A node address of the user cluster.")
    node_name: DnsSubdomain | None = None
    ready: bool = Field(default=True, description="False while the node is NotReady.")


class TCPLoadBalancerSpec(ApiModel):
    """What a KubeLB agent asks for: a load-balanced address for a Service of its cluster."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "self.ports.size() <= 1 || self.ports.all(p, has(p.name))",
                "every port needs a name when more than one port is listed",
                field_path=".ports",
            )
        )
    )

    cluster: ClusterName
    service: ServiceReference = Field(description="The Service of type LoadBalancer/NodePort it serves.")
    ports: Annotated[
        list[LoadBalancerPort],
        Field(min_length=1, max_length=MAX_PORTS, json_schema_extra=list_map("port", "protocol")),
        unique_by("port", "protocol"),
    ]
    endpoints: Annotated[
        list[LoadBalancerEndpoint],
        Field(max_length=MAX_ENDPOINTS, json_schema_extra=list_map("address")),
        unique_by("address"),
    ] = Field(default_factory=list, description="Node endpoints; agents update them on node add/remove/failure.")
    requested_address: IPv4 | None = Field(
        default=None, description="A specific address from the pool, like Service.spec.loadBalancerIP."
    )

    @model_validator(mode="after")
    def _ports(self) -> TCPLoadBalancerSpec:
        if len(self.ports) > 1 and any(port.name is None for port in self.ports):
            raise ValueError("every port needs a name when more than one port is listed")
        return self


class TCPLoadBalancerStatus(ApiModel):
    """Allocated: an address was assigned from the hub's pool (False with reason PoolExhausted when
    none is left). Ready: the address forwards to at least one ready endpoint."""

    address: IPv4 | None = Field(default=None, description="The allocated external IPv4 address.")
    observed_generation: ObservedGeneration | None = None
    conditions: Conditions | None = None


class TCPLoadBalancer(KubeObject):
    """A KubeLB-style external L4 load balancer (seed 002). metadata.name is CLUSTER.NAMESPACE.SERVICE."""

    kind_name: ClassVar[str] = "TCPLoadBalancer"
    plural: ClassVar[str] = "tcploadbalancers"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("tcplb",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    root_rules: ClassVar[tuple[dict[str, str], ...]] = _name_rule(
        "self.spec.cluster + '.' + self.spec.service.__namespace__ + '.' + self.spec.service.name",
        "CLUSTER.NAMESPACE.SERVICE",
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Cluster", json_path=".spec.cluster", description="User cluster"),
        PrinterColumn(name="Service", json_path=".spec.service.name", description="Service name"),
        PrinterColumn(name="Address", json_path=".status.address", description="Allocated address"),
        condition_column(),
        AGE_COLUMN,
    )

    kind: Literal["TCPLoadBalancer"] = "TCPLoadBalancer"
    spec: TCPLoadBalancerSpec
    status: TCPLoadBalancerStatus | None = None

    @staticmethod
    def object_name(cluster: str, namespace: str, service: str) -> str:
        return f"{cluster}.{namespace}.{service}"

    @model_validator(mode="after")
    def _name(self) -> TCPLoadBalancer:
        spec = self.spec
        expected = self.object_name(spec.cluster, spec.service.namespace, spec.service.name)
        _check_name(self.metadata.name, expected, "CLUSTER.NAMESPACE.SERVICE")
        return self


# --- NodeTunnelEndpoint --------------------------------------------------------------------------------

WIREGUARD_KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
ZERO_KEY = "A" * 43 + "="
PUBLIC_KEY_MESSAGE = "must be a WireGuard public key: the 44-character base64 of 32 bytes that `wg pubkey` prints"


def _check_public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32 or base64.b64encode(raw).decode() != value or value == ZERO_KEY:
        raise ValueError(f"{PUBLIC_KEY_MESSAGE}, not {value!r}")
    return value


WireGuardPublicKey = Annotated[
    str,
    Field(
        max_length=44,
        description="WireGuard public key (base64, 32 bytes). Private keys never leave the node.",
        json_schema_extra=validations(
            rule(
                f"self.matches({cel_quote(WIREGUARD_KEY_PATTERN)}) && self != '{ZERO_KEY}'",
                message_expression=f"'{PUBLIC_KEY_MESSAGE}, not \"' + self + '\"'",
            )
        ),
    ),
    AfterValidator(_check_public_key),
]

ENDPOINT_MESSAGE = "must be an underlay IPv4 address and UDP port such as 172.30.1.11:51820"


def _check_endpoint(value: str) -> str:
    host, sep, port = value.rpartition(":")
    valid = bool(sep) and full_match("[0-9]{1,5}", port) and 1 <= int(port) <= 65535
    if valid:
        try:
            check_ipv4(host)
        except ValueError:
            valid = False
    if not valid:
        raise ValueError(f"{ENDPOINT_MESSAGE}, not {value!r}")
    return value


UnderlayEndpoint = Annotated[
    str,
    Field(
        max_length=21,
        description="Underlay IPv4:port where the node's WireGuard listens.",
        json_schema_extra=validations(
            rule(
                "self.matches('^[0-9.]+:[0-9]{1,5}$')"
                " && isIP(self.split(':')[0]) && ip(self.split(':')[0]).family() == 4"
                " && !ip(self.split(':')[0]).isUnspecified()"
                " && int(self.split(':')[1]) >= 1 && int(self.split(':')[1]) <= 65535",
                message_expression=f"'{ENDPOINT_MESSAGE}, not \"' + self + '\"'",
            )
        ),
    ),
    AfterValidator(_check_endpoint),
]


class NodeTunnelEndpointSpec(ApiModel):
    """What a node publishes about its tunnel (written by the member)."""

    cluster: ClusterName
    node: DnsSubdomain = Field(description="Node name.")
    public_key: WireGuardPublicKey
    endpoint: UnderlayEndpoint
    pod_cidrs: Annotated[
        list[IPv4CIDR], Field(max_length=MAX_POD_CIDRS, json_schema_extra=LIST_SET), unique_by()
    ] = Field(default_factory=list, alias="podCIDRs", description="Pod CIDRs routed to this node.")


class TunnelPeer(ApiModel):
    """A peer of the node's WireGuard interface, as planned by the hub."""

    cluster: ClusterName
    node: DnsSubdomain
    public_key: WireGuardPublicKey
    endpoint: UnderlayEndpoint
    allowed_ips: Annotated[
        list[IPv4CIDR], Field(max_length=MAX_ALLOWED_IPS, json_schema_extra=LIST_SET), unique_by()
    ] = Field(
        default_factory=list,
        alias="allowedIPs",
        description="Networks routed through the tunnel to this peer: its proxy IP (/32) and, when it is in another"
        " cluster, its pod CIDRs.",
    )
    accepted_ips: (
        Annotated[list[IPv4CIDR], Field(max_length=MAX_ALLOWED_IPS, json_schema_extra=LIST_SET), unique_by()] | None
    ) = Field(
        default=None,
        alias="acceptedIPs",
        description="Networks accepted from this peer but not routed through the tunnel (a same-cluster peer's pod"
        " CIDRs: the cluster network routes them).",
    )
    persistent_keepalive_seconds: Annotated[Int, Field(ge=0, le=65535)] | None = Field(
        default=None, description="WireGuard persistent keepalive; unset or 0 disables it."
    )


class NodeTunnelEndpointStatus(ApiModel):
    """What the node receives (written by the hub)."""

    proxy_ipv4: IPv4 | None = Field(
        default=None,
        alias="proxyIPv4",
        description="The node proxy IPv4 allocated by the hub (annotation balancing.elf.io/nodeProxyIpv4).",
    )
    peers: (
        Annotated[
            list[TunnelPeer],
            Field(max_length=MAX_PEERS, json_schema_extra=list_map("cluster", "node")),
            unique_by("cluster", "node"),
        ]
        | None
    ) = None
    observed_generation: ObservedGeneration | None = None
    conditions: Conditions | None = Field(
        default=None,
        description=(
            "Ready: a proxy IP is allocated and the peer set is current (False with reason"
            " ProxyPoolExhausted when the pool is empty). Valid: no pod CIDR overlaps another cluster's."
        ),
    )


class NodeTunnelEndpoint(KubeObject):
    """A node's WireGuard tunnel endpoint and its peer set. metadata.name is CLUSTER.NODE."""

    kind_name: ClassVar[str] = "NodeTunnelEndpoint"
    plural: ClassVar[str] = "nodetunnelendpoints"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    short_names: ClassVar[tuple[str, ...]] = ("nte",)
    categories: ClassVar[tuple[str, ...]] = FEDERATION_CATEGORIES
    root_rules: ClassVar[tuple[dict[str, str], ...]] = _name_rule(
        "self.spec.cluster + '.' + self.spec.node", "CLUSTER.NODE"
    )
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Cluster", json_path=".spec.cluster", description="Cluster of the node"),
        PrinterColumn(name="Node", json_path=".spec.node", description="Node name"),
        PrinterColumn(name="Endpoint", json_path=".spec.endpoint", description="Underlay endpoint"),
        PrinterColumn(name="Proxy-IP", json_path=".status.proxyIPv4", description="Allocated proxy IPv4"),
        condition_column(),
        AGE_COLUMN,
        PrinterColumn(name="Public-Key", json_path=".spec.publicKey", description="WireGuard public key", priority=1),
    )

    kind: Literal["NodeTunnelEndpoint"] = "NodeTunnelEndpoint"
    spec: NodeTunnelEndpointSpec
    status: NodeTunnelEndpointStatus | None = None

    @staticmethod
    def object_name(cluster: str, node: str) -> str:
        return f"{cluster}.{node}"

    @classmethod
    def for_node(
        cls,
        cluster: str,
        node: str,
        public_key: str,
        endpoint: str,
        pod_cidrs: Sequence[str] = (),
        proxy_ipv4: str | None = None,
    ) -> NodeTunnelEndpoint:
        """A validated object as the member publishes it in its hub namespace (with the hub's proxy IP)."""
        document: dict[str, Any] = {
            "metadata": {"name": cls.object_name(cluster, node), "namespace": cluster},
            "spec": {"cluster": cluster, "node": node, "publicKey": public_key, "endpoint": endpoint,
                     "podCIDRs": list(pod_cidrs)},
        }
        if proxy_ipv4 is not None:
            document["status"] = {"proxyIPv4": proxy_ipv4}
        return cls.model_validate(document)

    @model_validator(mode="after")
    def _name(self) -> NodeTunnelEndpoint:
        expected = self.object_name(self.spec.cluster, self.spec.node)
        _check_name(self.metadata.name, expected, "CLUSTER.NODE")
        return self

    def is_ready(self) -> bool:
        condition = find_condition(self.status.conditions if self.status else None, "Ready")
        return condition is not None and condition.status == "True"
