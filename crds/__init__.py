"""API types of balancing.elf.io/v1beta1 (pydantic) and the CRD YAML generated from them.

The models are the source of truth: `python -m crds.generate` writes crds/*.yaml from them, and the
hub and member parse API objects with them (`parse_object`, `parse_yaml`). docs/api.md describes
every kind.
"""

from crds._base import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    KubeObject,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    find_condition,
)
from crds._registry import ALL_KINDS, KINDS_BY_NAME, InvalidObjectError, field_path, parse_object, parse_yaml
from crds.federation import (
    POLICY_NAME_LABEL,
    SERVICE_NAME_LABEL,
    SERVICE_NAMESPACE_LABEL,
    SOURCE_CLUSTER_LABEL,
    FederatedEndpoint,
    FederatedEndpointSlice,
    FederatedService,
    LoadBalancerEndpoint,
    LoadBalancerPort,
    MemberCluster,
    NodeTunnelEndpoint,
    ServiceExport,
    ServicePort,
    TCPLoadBalancer,
    TunnelPeer,
)
from crds.nodes import BalancingNode, PolicyOnNode
from crds.policies import (
    NODE_PROXY_IPV4_ANNOTATION,
    SERVICE_ID_ANNOTATION,
    BalancingPolicy,
    LocalRedirectPolicy,
    PortInfo,
    PortPairingError,
    pair_ports,
    pair_service_ports,
)

__all__ = [
    "ALL_KINDS",
    "API_VERSION",
    "GROUP",
    "KINDS_BY_NAME",
    "NODE_PROXY_IPV4_ANNOTATION",
    "POLICY_NAME_LABEL",
    "SERVICE_ID_ANNOTATION",
    "SERVICE_NAMESPACE_LABEL",
    "SERVICE_NAME_LABEL",
    "SOURCE_CLUSTER_LABEL",
    "VERSION",
    "BalancingNode",
    "BalancingPolicy",
    "Condition",
    "FederatedEndpoint",
    "FederatedEndpointSlice",
    "FederatedService",
    "InvalidObjectError",
    "KubeObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LoadBalancerEndpoint",
    "LoadBalancerPort",
    "LocalRedirectPolicy",
    "MemberCluster",
    "NodeTunnelEndpoint",
    "ObjectMeta",
    "PolicyOnNode",
    "PortInfo",
    "PortPairingError",
    "ServiceExport",
    "ServicePort",
    "TCPLoadBalancer",
    "TunnelPeer",
    "field_path",
    "find_condition",
    "pair_ports",
    "pair_service_ports",
    "parse_object",
    "parse_yaml",
]
