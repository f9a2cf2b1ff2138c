"""BalancingPolicy and LocalRedirectPolicy: the cluster-scoped policies of seeds 000 and 003."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from crds._base import (
    LIST_SET,
    MAX_ADDRESSES,
    MAX_PORTS,
    ApiModel,
    CelRule,
    Conditions,
    Dns1035Label,
    DnsLabel,
    Int,
    IPv4,
    KubeObject,
    LabelSelector,
    ObservedGeneration,
    PodSelector,
    PortName,
    PrinterColumn,
    Protocol,
    immutable,
    quoted_message,
    rule,
    unique_by,
    validations,
)

SERVICE_ID_ANNOTATION = "balancing.elf.io/serviceId"
NODE_PROXY_IPV4_ANNOTATION = "balancing.elf.io/nodeProxyIpv4"

RedirectMode = Literal["podEndpoint", "hostPort", "nodeProxy"]

# --- ports ---------------------------------------------------------------------------------------------


# ASCII digits without a leading zero: then two ports are the same number exactly when they are the
# same string, which the CEL uniqueness rule compares ("80" and "080" would otherwise both pass).
PORT_NUMBER_PATTERN = r"^[1-9][0-9]{0,4}$"
PORT_NUMBER_MESSAGE = "must be a port number from 1 to 65535 written as a string without leading zeros"


def _check_port(value: str) -> str:
    if re.fullmatch(PORT_NUMBER_PATTERN, value) is None or int(value) > 65535:
        raise ValueError(f'{PORT_NUMBER_MESSAGE}, not "{value}"')
    return value


PortNumber = Annotated[
    str,
    Field(
        max_length=5,
        description='Port number as a string, "1" to "65535".',
        json_schema_extra=validations(
            rule(
                f"self.matches('{PORT_NUMBER_PATTERN}') && int(self) <= 65535",
                message_expression=quoted_message(PORT_NUMBER_MESSAGE),
            )
        ),
    ),
    AfterValidator(_check_port),
]


class PortInfo(ApiModel):
    """A port of a frontend or backend. Ports of a frontend and its backend pair up by name, or by
    position when there is a single unnamed port."""

    port: PortNumber
    protocol: Protocol = Field(default="TCP", description="TCP or UDP.")
    name: PortName | None = Field(default=None, description="Port name; required when the list has more than one port.")

    @property
    def number(self) -> int:
        return int(self.port)


NAMES_REQUIRED_MESSAGE = "every port needs a name when more than one port is listed (ports pair up by name)"
NAMES_UNIQUE_MESSAGE = "port names must be unique"
FRONTEND_PORTS_UNIQUE_MESSAGE = "each port and protocol may appear only once in a frontend"

NAMES_REQUIRED_RULE = rule("self.size() <= 1 || self.all(p, has(p.name))", NAMES_REQUIRED_MESSAGE)
NAMES_UNIQUE_RULE = rule(
    "self.all(p, !has(p.name) || self.exists_one(q, has(q.name) && q.name == p.name))",
    NAMES_UNIQUE_MESSAGE,
    reason="FieldValueDuplicate",
)
FRONTEND_PORTS_UNIQUE_RULE = rule(
    "self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))",
    FRONTEND_PORTS_UNIQUE_MESSAGE,
    reason="FieldValueDuplicate",
)


def _check_names(ports: list[PortInfo]) -> list[PortInfo]:
    if len(ports) > 1 and any(port.name is None for port in ports):
        raise ValueError(NAMES_REQUIRED_MESSAGE)
    names = [port.name for port in ports if port.name is not None]
    if len(names) != len(set(names)):
        raise ValueError(NAMES_UNIQUE_MESSAGE)
    return ports


def _check_frontend_ports(ports: list[PortInfo]) -> list[PortInfo]:
    keys = [(port.number, port.protocol) for port in ports]
    if len(keys) != len(set(keys)):
        raise ValueError(FRONTEND_PORTS_UNIQUE_MESSAGE)
    return ports


FrontendPorts = Annotated[
    list[PortInfo],
    Field(
        min_length=1,
        max_length=MAX_PORTS,
        json_schema_extra=validations(NAMES_REQUIRED_RULE, NAMES_UNIQUE_RULE, FRONTEND_PORTS_UNIQUE_RULE),
    ),
    AfterValidator(_check_names),
    AfterValidator(_check_frontend_ports),
]
BackendPorts = Annotated[
    list[PortInfo],
    Field(
        min_length=1,
        max_length=MAX_PORTS,
        json_schema_extra=validations(NAMES_REQUIRED_RULE, NAMES_UNIQUE_RULE),
    ),
    AfterValidator(_check_names),
]


PORT_COUNT_MESSAGE = "backend toPorts must list as many ports as frontend toPorts"
PORT_PAIRING_MESSAGE = (
    "backend toPorts must pair with frontend toPorts: named ports pair by name and need the same"
    " protocol; a single unnamed port pairs by position and needs the same protocol"
)


class PortPairingError(ValueError):
    """Ports that do not pair; the message is one line and says what to change."""

    user_facing = True


def pair_ports(frontend: list[PortInfo], backend: list[PortInfo]) -> list[tuple[PortInfo, PortInfo]]:
    """Pair each frontend port with its backend port: by name when every port is named, else by position.

    Raises PortPairingError (a ValueError) with the same wording as the CRD's CEL rules.
    """
    if len(frontend) != len(backend):
        raise PortPairingError(
            f"backend toPorts lists {len(backend)} port(s) but frontend toPorts lists {len(frontend)};"
            f" {PORT_COUNT_MESSAGE}"
        )
    all_named = all(port.name is not None for port in [*frontend, *backend])
    if all_named:
        by_name = {port.name: port for port in backend}
        pairs = [(port, by_name.get(port.name)) for port in frontend]
    elif len(frontend) == 1:
        pairs = [(frontend[0], backend[0])]
    else:
        raise PortPairingError(NAMES_REQUIRED_MESSAGE)
    result: list[tuple[PortInfo, PortInfo]] = []
    for front, back in pairs:
        if back is None or back.protocol != front.protocol:
            raise PortPairingError(PORT_PAIRING_MESSAGE)
        result.append((front, back))
    return result


def pair_service_ports(service_ports: Sequence[PortInfo], backend: list[PortInfo]) -> list[tuple[PortInfo, PortInfo]]:
    """Pair every port of a Service with a backend port, for a serviceMatcher that omits toPorts.

    The frontend is then all of the Service's ports. A Service with a single port pairs with a backend
    that lists a single port, whatever their names. Otherwise each Service port pairs with the backend
    port of its name. Protocols must match. Backend ports that no Service port names are unused.
    Raises PortPairingError naming the first Service port left without a backend port.
    """
    candidates: list[tuple[PortInfo, PortInfo | None]]
    if len(service_ports) == 1 and len(backend) == 1:
        candidates = [(service_ports[0], backend[0])]
    else:
        by_name = {port.name: port for port in backend if port.name is not None}
        candidates = [(port, by_name.get(port.name) if port.name is not None else None) for port in service_ports]
    result: list[tuple[PortInfo, PortInfo]] = []
    for service_port, back in candidates:
        described = f"{service_port.name or 'unnamed'} ({service_port.port}/{service_port.protocol})"
        if back is None:
            raise PortPairingError(
                f"Service port {described} has no backend port of the same name: the policy omits"
                " frontend toPorts, so every Service port needs a backend port named like it"
            )
        if back.protocol != service_port.protocol:
            raise PortPairingError(
                f"Service port {described} pairs with backend port {back.port}/{back.protocol}: the protocols differ"
            )
        result.append((service_port, back))
    return result


@dataclass(frozen=True)
class _PortsInCel:
    """CEL views of one side's toPorts, which may sit under either of two variants."""

    keys: str  # list of 'name/protocol' strings (name empty when unset)
    count: str  # number of ports

    @classmethod
    def of(cls, first_variant: str, first_list: str, second_list: str | None = None) -> _PortsInCel:
        if second_list is None:
            return cls(keys=_port_keys(first_list), count=f"{first_list}.size()")
        return cls(
            keys=f"(has({first_variant}) ? {_port_keys(first_list)} : {_port_keys(second_list)})",
            count=f"(has({first_variant}) ? {first_list}.size() : {second_list}.size())",
        )


def _port_keys(list_expression: str) -> str:
    # The protocol is spelled as literals so that CEL's cost estimate knows the strings' sizes.
    return f"{list_expression}.map(p, (has(p.name) ? p.name : '') + (p.protocol == 'UDP' ? '/UDP' : '/TCP'))"


def _pairing_rules(valid_guard: str, front: _PortsInCel, back: _PortsInCel) -> tuple[CelRule, ...]:
    """CEL rules pairing frontend and backend ports; they mirror pair_ports(). `valid_guard` holds when
    both sides have exactly one variant and the frontend lists its ports."""
    # A static message: string(int) has an unbounded estimated size, which the CEL cost check refuses.
    count = rule(f"!({valid_guard}) || {front.count} == {back.count}", PORT_COUNT_MESSAGE, field_path=".backend")
    unnamed = f"({front.keys}.exists(k, k.startsWith('/')) || {back.keys}.exists(k, k.startsWith('/')))"
    by_position = (
        f"({front.count} != 1 || {front.keys}[0].substring({front.keys}[0].indexOf('/'))"
        f" == {back.keys}[0].substring({back.keys}[0].indexOf('/')))"
    )
    by_name = f"{front.keys}.all(k, k in {back.keys})"
    pairing = rule(
        f"!({valid_guard}) || {front.count} != {back.count} || ({unnamed} ? {by_position} : {by_name})",
        PORT_PAIRING_MESSAGE,
        field_path=".backend",
    )
    return count, pairing


# --- frontend ------------------------------------------------------------------------------------------


class ServiceMatcher(ApiModel):
    """Frontend that binds a Kubernetes Service by namespace and name."""

    namespace: DnsLabel = Field(description="Namespace of the Service.")
    service_name: Dns1035Label = Field(description="Name of the Service.")
    to_ports: FrontendPorts | None = Field(
        default=None,
        description=(
            "Service ports the policy takes over. When omitted, all of the Service's ports: each pairs with"
            " the backend port of its name (or, for a single-port Service, with a single backend port)."
        ),
    )


class AddressMatcher(ApiModel):
    """Frontend that binds a virtual IPv4 address and ports."""

    ip: IPv4 = Field(description="The virtual IPv4 address (VIP).")
    to_ports: FrontendPorts = Field(description="Ports of the VIP the policy takes over.")


ONE_FRONTEND_RULE = rule(
    "has(self.serviceMatcher) != has(self.addressMatcher)",
    "exactly one of frontend.serviceMatcher or frontend.addressMatcher must be set",
)


class Frontend(ApiModel):
    """What the policy binds: exactly one of serviceMatcher or addressMatcher."""

    model_config = ConfigDict(json_schema_extra=validations(ONE_FRONTEND_RULE))

    service_matcher: ServiceMatcher | None = None
    address_matcher: AddressMatcher | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Frontend:
        if (self.service_matcher is None) == (self.address_matcher is None):
            raise ValueError(ONE_FRONTEND_RULE["message"])
        return self

    @property
    def to_ports(self) -> list[PortInfo] | None:
        """The listed frontend ports; None for a serviceMatcher that takes all of its Service's ports."""
        matcher = self.service_matcher or self.address_matcher
        assert matcher is not None
        return matcher.to_ports


def _spec_port_pairs(
    frontend: Frontend, backend: list[PortInfo], service_ports: Sequence[PortInfo] | None
) -> list[tuple[PortInfo, PortInfo]]:
    listed = frontend.to_ports
    if listed is not None:
        return pair_ports(listed, backend)
    if service_ports is None:
        raise PortPairingError("the policy omits frontend toPorts: pass the Service's ports to pair them")
    return pair_service_ports(service_ports, backend)


FRONTEND_VALID = (
    "has(self.frontend.serviceMatcher) != has(self.frontend.addressMatcher)"
    " && (!has(self.frontend.serviceMatcher) || has(self.frontend.serviceMatcher.toPorts))"
)
FRONTEND_PORTS = _PortsInCel.of(
    "self.frontend.serviceMatcher", "self.frontend.serviceMatcher.toPorts", "self.frontend.addressMatcher.toPorts"
)


# --- BalancingPolicy -----------------------------------------------------------------------------------


class ServiceEndpoint(ApiModel):
    """Backend of pods selected by labels, reached as their pod IP, hostPort or node proxy address."""

    endpoint_selector: PodSelector = Field(description="Selects the backend pods (must not be empty).")
    redirect_mode: RedirectMode = Field(
        default="podEndpoint",
        description=(
            "podEndpoint: the pod IP and port; hostPort: the pod's node IP and hostPort; nodeProxy: the"
            " node's balancing.elf.io/nodeProxyIpv4 address and the policy port."
        ),
    )
    to_ports: BackendPorts = Field(description="Backend ports, paired with the frontend ports.")


class AddressEndpoint(ApiModel):
    """Backend of fixed IPv4 addresses."""

    addresses: Annotated[
        list[IPv4],
        Field(min_length=1, max_length=MAX_ADDRESSES, json_schema_extra=LIST_SET),
        unique_by(),
    ] = Field(description="Backend IPv4 addresses.")
    to_ports: BackendPorts = Field(description="Backend ports, paired with the frontend ports.")


ONE_BACKEND_RULE = rule(
    "has(self.serviceEndpoint) != has(self.addressEndpoint)",
    "exactly one of backend.serviceEndpoint or backend.addressEndpoint must be set",
)


class BalancingBackend(ApiModel):
    """Where traffic goes: exactly one of serviceEndpoint or addressEndpoint."""

    model_config = ConfigDict(json_schema_extra=validations(ONE_BACKEND_RULE))

    service_endpoint: ServiceEndpoint | None = None
    address_endpoint: AddressEndpoint | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BalancingBackend:
        if (self.service_endpoint is None) == (self.address_endpoint is None):
            raise ValueError(ONE_BACKEND_RULE["message"])
        return self

    @property
    def to_ports(self) -> list[PortInfo]:
        endpoint = self.service_endpoint or self.address_endpoint
        assert endpoint is not None
        return endpoint.to_ports


class BalancingPolicyConfig(ApiModel):
    """Where the policy applies."""

    node_label_selector: LabelSelector | None = Field(
        default=None, description="Nodes that apply the policy; all nodes when unset."
    )
    enable_out_cluster: bool = Field(
        default=False, description="Also push the policy to out-cluster hosts (external agents)."
    )


BALANCING_BACKEND_VALID = "has(self.backend.serviceEndpoint) != has(self.backend.addressEndpoint)"
BALANCING_BACKEND_PORTS = _PortsInCel.of(
    "self.backend.serviceEndpoint", "self.backend.serviceEndpoint.toPorts", "self.backend.addressEndpoint.toPorts"
)


class PolicyStatus(ApiModel):
    """Observed state, written by the controllers."""

    observed_generation: ObservedGeneration | None = Field(
        default=None, description="The metadata.generation the status describes."
    )
    backend_count: Annotated[Int, Field(ge=0)] | None = Field(
        default=None, description="Number of backends currently resolved for the frontend."
    )
    node_count: Annotated[Int, Field(ge=0)] | None = Field(
        default=None, description="Number of nodes that report the policy programmed at its current generation."
    )
    conditions: Conditions | None = Field(
        default=None,
        description=(
            "Accepted: valid and binding its frontend. Conflict: another policy already binds the same frontend."
            " Ready: programmed on every node it targets."
        ),
    )


class BalancingPolicySpec(ApiModel):
    """A global L4 load-balancing rule: a frontend (Service or VIP) resolved to a backend."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *_pairing_rules(f"{FRONTEND_VALID} && {BALANCING_BACKEND_VALID}", FRONTEND_PORTS, BALANCING_BACKEND_PORTS)
        )
    )

    enabled: bool = Field(default=True, description="Whether the policy is in effect.")
    config: BalancingPolicyConfig | None = None
    frontend: Frontend = Field(
        description="What the policy binds (immutable).", json_schema_extra=validations(immutable("frontend"))
    )
    backend: BalancingBackend = Field(
        description="Where traffic goes (immutable).", json_schema_extra=validations(immutable("backend"))
    )

    @model_validator(mode="after")
    def _ports_pair(self) -> BalancingPolicySpec:
        if self.frontend.to_ports is not None:
            pair_ports(self.frontend.to_ports, self.backend.to_ports)
        return self

    def port_pairs(self, service_ports: Sequence[PortInfo] | None = None) -> list[tuple[PortInfo, PortInfo]]:
        """(frontend port, backend port) pairs to program. `service_ports`: the frontend Service's TCP and
        UDP ports, needed when the serviceMatcher omits toPorts (see pair_service_ports)."""
        return _spec_port_pairs(self.frontend, self.backend.to_ports, service_ports)


def _policy_columns(extra: tuple[PrinterColumn, ...]) -> tuple[PrinterColumn, ...]:
    return (
        PrinterColumn(name="Enabled", json_path=".spec.enabled", type="boolean", description="In effect"),
        PrinterColumn(
            name="Service",
            json_path=".spec.frontend.serviceMatcher.serviceName",
            description="Frontend Service name",
        ),
        PrinterColumn(name="VIP", json_path=".spec.frontend.addressMatcher.ip", description="Frontend VIP"),
        *extra,
        PrinterColumn(
            name="Ready",
            json_path='.status.conditions[?(@.type=="Ready")].status',
            description="Programmed on its nodes",
        ),
        PrinterColumn(name="Age", json_path=".metadata.creationTimestamp", type="date"),
        PrinterColumn(
            name="Svc-Namespace",
            json_path=".spec.frontend.serviceMatcher.namespace",
            description="Frontend Service namespace",
            priority=1,
        ),
        PrinterColumn(
            name="Backends",
            json_path=".status.backendCount",
            type="integer",
            description="Resolved backends",
            priority=1,
        ),
        PrinterColumn(
            name="Nodes",
            json_path=".status.nodeCount",
            type="integer",
            description="Nodes that programmed it",
            priority=1,
        ),
        PrinterColumn(
            name="Reason",
            json_path='.status.conditions[?(@.type=="Ready")].reason',
            description="Why it is (not) ready",
            priority=1,
        ),
    )


class BalancingPolicy(KubeObject):
    """Global L4 load balancing: a Service or VIP frontend resolved to pods (by pod IP, hostPort or
    node proxy address) or to fixed addresses, in every cluster of the federation."""

    kind_name: ClassVar[str] = "BalancingPolicy"
    plural: ClassVar[str] = "balancingpolicies"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    short_names: ClassVar[tuple[str, ...]] = ("bp",)
    categories: ClassVar[tuple[str, ...]] = ("balancing",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = _policy_columns(
        (
            PrinterColumn(
                name="Mode",
                json_path=".spec.backend.serviceEndpoint.redirectMode",
                description="Backend redirect mode (serviceEndpoint backends)",
            ),
            PrinterColumn(
                name="Addresses",
                json_path=".spec.backend.addressEndpoint.addresses",
                description="Backend addresses (addressEndpoint backends)",
            ),
        )
    )

    kind: Literal["BalancingPolicy"] = "BalancingPolicy"
    spec: BalancingPolicySpec
    status: PolicyStatus | None = None


# --- LocalRedirectPolicy -------------------------------------------------------------------------------


class LocalRedirectBackend(ApiModel):
    """Pods on the same node as the client; when none is ready, traffic follows normal resolution."""

    endpoint_selector: PodSelector = Field(description="Selects the node-local backend pods (must not be empty).")
    to_ports: BackendPorts = Field(description="Backend ports, paired with the frontend ports.")


class LocalRedirectPolicyConfig(ApiModel):
    """Where the policy applies and how much it may redirect."""

    node_label_selector: LabelSelector | None = Field(
        default=None, description="Nodes that apply the policy; all nodes when unset."
    )
    redirect_qos_limit: Annotated[Int, Field(ge=0, le=1_000_000_000)] | None = Field(
        default=None,
        description=(
            "At most this many redirects per frontend per second on each node; the overflow follows"
            " normal resolution. 0 means unlimited; unset means the member chart's"
            " feature.redirectQosLimit."
        ),
    )


LRP_BACKEND_PORTS = _PortsInCel.of("self.backend", "self.backend.toPorts")


class LocalRedirectPolicySpec(ApiModel):
    """Redirect a Service or VIP to pods on the client's own node (for example node-local DNS)."""

    model_config = ConfigDict(
        json_schema_extra=validations(*_pairing_rules(FRONTEND_VALID, FRONTEND_PORTS, LRP_BACKEND_PORTS))
    )

    enabled: bool = Field(default=True, description="Whether the policy is in effect.")
    config: LocalRedirectPolicyConfig | None = None
    frontend: Frontend = Field(
        description="What the policy binds (immutable).", json_schema_extra=validations(immutable("frontend"))
    )
    backend: LocalRedirectBackend = Field(
        description="The node-local pods (immutable).", json_schema_extra=validations(immutable("backend"))
    )

    @model_validator(mode="after")
    def _ports_pair(self) -> LocalRedirectPolicySpec:
        if self.frontend.to_ports is not None:
            pair_ports(self.frontend.to_ports, self.backend.to_ports)
        return self

    def port_pairs(self, service_ports: Sequence[PortInfo] | None = None) -> list[tuple[PortInfo, PortInfo]]:
        """As BalancingPolicySpec.port_pairs."""
        return _spec_port_pairs(self.frontend, self.backend.to_ports, service_ports)


def _check_service_id(annotations: dict[str, str] | None) -> None:
    value = (annotations or {}).get(SERVICE_ID_ANNOTATION)
    if value is not None and not (re.fullmatch("[0-9]{1,10}", value) and 0 < int(value) < 2**32):
        raise ValueError(
            f"metadata.annotations[{SERVICE_ID_ANNOTATION}] must be a number from 1 to 4294967295, not {value!r}"
        )


class LocalRedirectPolicy(KubeObject):
    """Node-local redirection: a Service or VIP frontend resolved to ready pods on the client's node."""

    kind_name: ClassVar[str] = "LocalRedirectPolicy"
    plural: ClassVar[str] = "localredirectpolicies"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    short_names: ClassVar[tuple[str, ...]] = ("lrp",)
    categories: ClassVar[tuple[str, ...]] = ("balancing",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = _policy_columns(())

    kind: Literal["LocalRedirectPolicy"] = "LocalRedirectPolicy"
    spec: LocalRedirectPolicySpec
    status: PolicyStatus | None = None

    @model_validator(mode="after")
    def _service_id(self) -> LocalRedirectPolicy:
        _check_service_id(self.metadata.annotations)
        return self

    @property
    def service_id(self) -> int | None:
        value = (self.metadata.annotations or {}).get(SERVICE_ID_ANNOTATION)
        return int(value) if value is not None else None


AnyPolicy = BalancingPolicy | LocalRedirectPolicy
