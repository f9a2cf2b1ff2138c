"""Table of invalid objects: each must be refused by the apiserver AND by the pydantic models, with an
error that names the offending field.

`field` is the substring kubectl's error must contain (the field path as the apiserver prints it).
`python_field` is what the pydantic error (formatted by crds.field_path) must contain; None means the
rule exists only in the schema (strict decoding, or a check pydantic cannot see).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class InvalidCase:
    id: str
    description: str
    yaml: str
    field: str
    python_field: str | None = "="  # "=" means: the same as field

    @property
    def expected_python_field(self) -> str | None:
        return self.field if self.python_field == "=" else self.python_field


def _block(*parts: str) -> str:
    """YAML mapping fragments, each dedented on its own, joined and indented under a parent key."""
    body = "\n".join(textwrap.dedent(part).strip("\n") for part in parts)
    return textwrap.indent(body, "  ") + "\n"


def _bp(name: str, *spec: str) -> str:
    return f"apiVersion: balancing.elf.io/v1beta1\nkind: BalancingPolicy\nmetadata:\n  name: {name}\nspec:\n" + _block(
        *spec
    )


def _lrp(name: str, *spec: str) -> str:
    head = f"apiVersion: balancing.elf.io/v1beta1\nkind: LocalRedirectPolicy\nmetadata:\n  name: {name}\nspec:\n"
    return head + _block(*spec)


def _namespaced(
    kind: str, name: str, spec: str, status: str | None = None, api_version: str = "balancing.elf.io/v1beta1"
) -> str:
    text = f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    text += _block(spec)
    if status is not None:
        text += "status:\n" + _block(status)
    return text


SERVICE_FRONTEND = """
frontend:
  serviceMatcher:
    namespace: default
    serviceName: web
    toPorts:
      - port: "80"
        protocol: TCP
        name: http
"""
POD_BACKEND = """
backend:
  serviceEndpoint:
    endpointSelector:
      matchLabels:
        app: web
    redirectMode: podEndpoint
    toPorts:
      - port: "8080"
        protocol: TCP
        name: http
"""
KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="

POLICY_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "two-frontends",
        "frontend sets both serviceMatcher and addressMatcher",
        _bp(
            "bft-two-frontends",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts: [{port: "80", protocol: TCP, name: http}]
              addressMatcher:
                ip: 169.254.10.10
                toPorts: [{port: "80", protocol: TCP, name: http}]
            """,
            POD_BACKEND,
        ),
        "spec.frontend",
    ),
    InvalidCase(
        "no-frontend-variant",
        "frontend is an empty object",
        _bp("bft-no-frontend", "frontend: {}", POD_BACKEND),
        "spec.frontend",
    ),
    InvalidCase(
        "two-backends",
        "backend sets both serviceEndpoint and addressEndpoint",
        _bp(
            "bft-two-backends",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP, name: http}]
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend",
    ),
    InvalidCase(
        "no-backend-variant",
        "backend is an empty object",
        _bp("bft-no-backend", SERVICE_FRONTEND, "backend: {}"),
        "spec.backend",
    ),
    InvalidCase(
        "port-zero",
        'port "0" is out of range',
        _bp(
            "bft-port-zero",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts: [{port: "0", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.frontend.addressMatcher.toPorts[0].port",
    ),
    InvalidCase(
        "port-too-big",
        'port "65536" is out of range',
        _bp(
            "bft-port-too-big",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "65536", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.toPorts[0].port",
    ),
    InvalidCase(
        "port-not-a-number",
        'port "http" is not a number',
        _bp(
            "bft-port-nan",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts: [{port: "http", protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.toPorts[0].port",
    ),
    InvalidCase(
        "port-as-integer",
        "port written as a YAML integer instead of a string",
        _bp(
            "bft-port-int",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts: [{port: 80, protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.toPorts[0].port",
    ),
    InvalidCase(
        "protocol-sctp",
        "protocol is neither TCP nor UDP",
        _bp(
            "bft-sctp",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts: [{port: "80", protocol: SCTP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: SCTP}]
            """,
        ),
        "spec.frontend.serviceMatcher.toPorts[0].protocol",
    ),
    InvalidCase(
        "vip-bad-octet",
        "frontend VIP is not an IPv4 address",
        _bp(
            "bft-vip-octet",
            """
            frontend:
              addressMatcher:
                ip: 169.254.169.256
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.frontend.addressMatcher.ip",
    ),
    InvalidCase(
        "vip-ipv6",
        "frontend VIP is IPv6 (only IPv4 is supported)",
        _bp(
            "bft-vip-v6",
            """
            frontend:
              addressMatcher:
                ip: "fd00::10"
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.frontend.addressMatcher.ip",
    ),
    InvalidCase(
        "backend-address-invalid",
        "a backend address is not an IPv4 address",
        _bp(
            "bft-backend-addr",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1", "10.0.0"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.backend.addressEndpoint.addresses[1]",
    ),
    InvalidCase(
        "backend-address-duplicate",
        "a backend address is listed twice",
        _bp(
            "bft-backend-dup",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1", "10.0.0.1"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.backend.addressEndpoint.addresses[1]",
        python_field="spec.backend.addressEndpoint.addresses",
    ),
    InvalidCase(
        "ports-unnamed",
        "two frontend ports without names",
        _bp(
            "bft-unnamed",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts:
                  - {port: "80", protocol: TCP}
                  - {port: "443", protocol: TCP}
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts:
                  - {port: "8080", protocol: TCP}
                  - {port: "8443", protocol: TCP}
            """,
        ),
        "spec.frontend.serviceMatcher.toPorts",
    ),
    InvalidCase(
        "port-names-duplicate",
        "two backend ports share a name",
        _bp(
            "bft-dup-names",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts:
                  - {port: "80", protocol: TCP, name: http}
                  - {port: "443", protocol: TCP, name: https}
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts:
                  - {port: "8080", protocol: TCP, name: http}
                  - {port: "8443", protocol: TCP, name: http}
            """,
        ),
        "spec.backend.serviceEndpoint.toPorts",
    ),
    InvalidCase(
        "frontend-port-duplicate",
        "the frontend lists 80/TCP twice",
        _bp(
            "bft-dup-ports",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts:
                  - {port: "80", protocol: TCP, name: a}
                  - {port: "80", protocol: TCP, name: b}
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts:
                  - {port: "80", protocol: TCP, name: a}
                  - {port: "81", protocol: TCP, name: b}
            """,
        ),
        "spec.frontend.addressMatcher.toPorts",
    ),
    InvalidCase(
        "port-count-mismatch",
        "backend has fewer ports than the frontend",
        _bp(
            "bft-count",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts:
                  - {port: "80", protocol: TCP, name: http}
                  - {port: "443", protocol: TCP, name: https}
            """,
            POD_BACKEND,
        ),
        "spec.backend",
        python_field="backend toPorts",
    ),
    InvalidCase(
        "port-names-do-not-pair",
        "a frontend port name has no backend port of that name",
        _bp(
            "bft-pairing",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP, name: web}]
            """,
        ),
        "spec.backend",
        python_field="backend toPorts",
    ),
    InvalidCase(
        "protocol-does-not-pair",
        "a single unnamed TCP frontend port paired with a UDP backend port",
        _lrp(
            "bft-proto-pair",
            """
            frontend:
              addressMatcher:
                ip: 169.254.20.53
                toPorts: [{port: "53", protocol: UDP}]
            backend:
              endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
              toPorts: [{port: "53", protocol: TCP}]
            """,
        ),
        "spec.backend",
        python_field="backend toPorts",
    ),
    InvalidCase(
        "redirect-mode-unknown",
        "redirectMode is not one of podEndpoint, hostPort, nodeProxy",
        _bp(
            "bft-mode",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                redirectMode: nodePort
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.redirectMode",
    ),
    InvalidCase(
        "selector-empty",
        "endpointSelector selects nothing in particular (would match every pod)",
        _bp(
            "bft-empty-selector",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {}
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.endpointSelector",
    ),
    InvalidCase(
        "selector-in-without-values",
        "a matchExpressions term with operator In and no values",
        _bp(
            "bft-in-no-values",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector:
                  matchExpressions: [{key: app, operator: In}]
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.endpointSelector.matchExpressions[0].values",
        python_field="spec.backend.serviceEndpoint.endpointSelector.matchExpressions[0]",
    ),
    InvalidCase(
        "selector-bad-label-key",
        "matchLabels with a key that is not a label key",
        _lrp(
            "bft-label-key",
            """
            frontend:
              addressMatcher:
                ip: 169.254.20.10
                toPorts: [{port: "53", protocol: UDP}]
            backend:
              endpointSelector: {matchLabels: {"-bad key": node-local-dns}}
              toPorts: [{port: "53", protocol: UDP}]
            """,
        ),
        "spec.backend.endpointSelector.matchLabels",
    ),
    InvalidCase(
        "unknown-field",
        "a field the schema does not know (strict decoding)",
        _bp(
            "bft-unknown",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                port: "80"
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.port",
    ),
    InvalidCase(
        "service-name-missing",
        "serviceMatcher without serviceName",
        _bp(
            "bft-no-name",
            """
            frontend:
              serviceMatcher:
                namespace: default
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.serviceName",
    ),
    InvalidCase(
        "service-namespace-invalid",
        "serviceMatcher namespace is not a DNS label",
        _bp(
            "bft-bad-ns",
            """
            frontend:
              serviceMatcher:
                namespace: Default
                serviceName: web
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.namespace",
    ),
    InvalidCase(
        "enabled-not-boolean",
        'enabled: "yes" is a string',
        _bp("bft-enabled", 'enabled: "yes"', SERVICE_FRONTEND, POD_BACKEND),
        "spec.enabled",
    ),
    InvalidCase(
        "lrp-backend-with-redirect-mode",
        "LocalRedirectPolicy backend has no redirectMode (a BalancingPolicy field)",
        _lrp(
            "bft-lrp-mode",
            """
            frontend:
              addressMatcher:
                ip: 169.254.20.10
                toPorts: [{port: "53", protocol: UDP}]
            backend:
              endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
              redirectMode: podEndpoint
              toPorts: [{port: "53", protocol: UDP}]
            """,
        ),
        "spec.backend.redirectMode",
    ),
    InvalidCase(
        "lrp-qos-negative",
        "LocalRedirectPolicy redirectQosLimit below 0",
        _lrp(
            "bft-lrp-qos",
            """
            config:
              redirectQosLimit: -1
            frontend:
              addressMatcher:
                ip: 169.254.20.10
                toPorts: [{port: "53", protocol: UDP}]
            backend:
              endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
              toPorts: [{port: "53", protocol: UDP}]
            """,
        ),
        "spec.config.redirectQosLimit",
    ),
    InvalidCase(
        "spec-missing",
        "a policy without spec",
        "apiVersion: balancing.elf.io/v1beta1\nkind: LocalRedirectPolicy\nmetadata:\n  name: bft-no-spec\n",
        "spec",
    ),
)

FEDERATION_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "nte-public-key-malformed",
        "publicKey is not base64 of 32 bytes",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1.member-1-node-1",
            """
            cluster: member-1
            node: member-1-node-1
            publicKey: not-a-key
            endpoint: 172.30.1.11:51820
            podCIDRs: [10.101.1.0/24]
            """,
        ),
        "spec.publicKey",
    ),
    InvalidCase(
        "nte-public-key-noncanonical",
        "publicKey has 44 characters but its last base64 digit carries stray bits",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1.member-1-node-1",
            f"""
            cluster: member-1
            node: member-1-node-1
            publicKey: {KEY[:42]}n=
            endpoint: 172.30.1.11:51820
            """,
        ),
        "spec.publicKey",
    ),
    InvalidCase(
        "nte-endpoint-without-port",
        "endpoint is a bare address",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1.member-1-node-1",
            f"""
            cluster: member-1
            node: member-1-node-1
            publicKey: {KEY}
            endpoint: 172.30.1.11
            """,
        ),
        "spec.endpoint",
    ),
    InvalidCase(
        "nte-pod-cidr-not-canonical",
        "a pod CIDR with host bits set",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1.member-1-node-1",
            f"""
            cluster: member-1
            node: member-1-node-1
            publicKey: {KEY}
            endpoint: 172.30.1.11:51820
            podCIDRs: [10.101.1.5/24]
            """,
        ),
        "spec.podCIDRs[0]",
    ),
    InvalidCase(
        "nte-name-mismatch",
        "metadata.name is not CLUSTER.NODE",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1-node-1",
            f"""
            cluster: member-1
            node: member-1-node-1
            publicKey: {KEY}
            endpoint: 172.30.1.11:51820
            """,
        ),
        "metadata.name",
    ),
    InvalidCase(
        "nte-private-key",
        "a privateKey field is refused: private keys never go to the API",
        _namespaced(
            "NodeTunnelEndpoint",
            "member-1.member-1-node-1",
            f"""
            cluster: member-1
            node: member-1-node-1
            publicKey: {KEY}
            privateKey: {KEY}
            endpoint: 172.30.1.11:51820
            """,
        ),
        "spec.privateKey",
    ),
    InvalidCase(
        "member-cluster-name",
        "MemberCluster name is not a DNS label",
        _namespaced("MemberCluster", "member.1", "heartbeatPeriodSeconds: 10"),
        "metadata.name",
    ),
    InvalidCase(
        "member-cluster-timeout",
        "heartbeat timeout shorter than the period",
        _namespaced(
            "MemberCluster",
            "member-1",
            """
            heartbeatPeriodSeconds: 30
            heartbeatTimeoutSeconds: 20
            """,
        ),
        "spec.heartbeatTimeoutSeconds",
        python_field="spec",
    ),
    InvalidCase(
        "exported-service-ports-unnamed",
        "an export with two unnamed ports",
        _namespaced(
            "ExportedService",
            "member-1.default.web",
            """
            cluster: member-1
            namespace: default
            serviceName: web
            ports:
              - {port: 80, protocol: TCP}
              - {port: 443, protocol: TCP}
            """,
        ),
        "spec.ports",
    ),
    InvalidCase(
        "exported-service-duplicate-port",
        "an export that lists 80/TCP twice",
        _namespaced(
            "ExportedService",
            "member-1.default.web",
            """
            cluster: member-1
            namespace: default
            serviceName: web
            ports:
              - {name: a, port: 80, protocol: TCP}
              - {name: b, port: 80, protocol: TCP}
            """,
        ),
        "spec.ports[1]",
        python_field="spec.ports",
    ),
    InvalidCase(
        "exported-service-affinity-timeout",
        "sessionAffinityTimeoutSeconds without sessionAffinity ClientIP",
        _namespaced(
            "ExportedService",
            "member-1.default.web",
            """
            cluster: member-1
            namespace: default
            serviceName: web
            sessionAffinityTimeoutSeconds: 300
            ports: [{port: 80}]
            """,
        ),
        "spec.sessionAffinityTimeoutSeconds",
        python_field="spec",
    ),
    InvalidCase(
        "exported-service-name",
        "metadata.name is not CLUSTER.NAMESPACE.SERVICE",
        _namespaced(
            "ExportedService",
            "web",
            """
            cluster: member-1
            namespace: default
            serviceName: web
            ports: [{port: 80}]
            """,
        ),
        "metadata.name",
    ),
    InvalidCase(
        "tcplb-duplicate-endpoint",
        "a load balancer endpoint listed twice",
        _namespaced(
            "TCPLoadBalancer",
            "member-1.default.web",
            """
            cluster: member-1
            service: {namespace: default, name: web}
            ports: [{port: 80, upstreamPort: 30080}]
            endpoints:
              - {address: 172.30.1.11}
              - {address: 172.30.1.11}
            """,
        ),
        "spec.endpoints[1]",
        python_field="spec",
    ),
    InvalidCase(
        "tcplb-upstream-port",
        "upstreamPort out of range",
        _namespaced(
            "TCPLoadBalancer",
            "member-1.default.web",
            """
            cluster: member-1
            service: {namespace: default, name: web}
            ports: [{port: 80, upstreamPort: 70000}]
            """,
        ),
        "spec.ports[0].upstreamPort",
    ),
    InvalidCase(
        "endpoint-slice-two-sources",
        "a FederatedEndpointSlice for both a service and a policy",
        _namespaced(
            "FederatedEndpointSlice",
            "member-1.web-abcde",
            """
            cluster: member-1
            service: {namespace: default, name: web}
            policy: {name: test-service-podendpoint}
            endpoints: [{addresses: [10.101.1.5]}]
            """,
        ),
        "spec",
    ),
    InvalidCase(
        "fes-name-without-cluster",
        "a FederatedEndpointSlice whose name does not start with CLUSTER. (copies share the catalogue)",
        _namespaced(
            "FederatedEndpointSlice",
            "web-abcde",
            """
            cluster: member-1
            service: {namespace: default, name: web}
            endpoints: [{addresses: [10.101.1.5]}]
            """,
        ),
        "metadata.name",
    ),
    InvalidCase(
        "mcs-import-without-type",
        "an MCS ServiceImport without spec.type",
        _namespaced(
            "ServiceImport", "web", "ips: [10.255.0.10]", api_version="multicluster.x-k8s.io/v1beta1"
        ),
        "spec.type",
    ),
    InvalidCase(
        "mcs-import-ip",
        "an MCS ServiceImport whose clusterset IP is not an address",
        _namespaced(
            "ServiceImport",
            "web",
            """
            type: ClusterSetIP
            ips: [10.255.0.300]
            ports: [{port: 80, protocol: TCP}]
            """,
            api_version="multicluster.x-k8s.io/v1alpha1",
        ),
        "spec.ips[0]",
    ),
    InvalidCase(
        "mcs-export-label-key",
        "an MCS ServiceExport exporting a label with an invalid key",
        _namespaced(
            "ServiceExport", "web", 'exportedLabels: {"-bad": x}', api_version="multicluster.x-k8s.io/v1alpha1"
        ),
        "spec.exportedLabels",
    ),
)


def _node_tunnel_endpoint(status: str) -> str:
    """member-1-node-9's NodeTunnelEndpoint with the given status, for the hub-written status cases."""
    spec = f"""
    cluster: member-1
    node: member-1-node-9
    publicKey: {KEY}
    endpoint: 172.30.1.11:51820
    """
    return _namespaced("NodeTunnelEndpoint", "member-1.member-1-node-9", spec, status=status)


# Status written by the hub; applied with `kubectl apply --subresource=status` to an existing object.
STATUS_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "nte-status-proxy-ip",
        "the allocated proxy IPv4 is not an address",
        _node_tunnel_endpoint("proxyIPv4: 100.96.0.300"),
        "status.proxyIPv4",
    ),
    InvalidCase(
        "nte-status-peer-key",
        "a peer's publicKey is malformed",
        _node_tunnel_endpoint(
            """
            proxyIPv4: 100.96.0.1
            peers:
              - cluster: member-2
                node: member-2-node-1
                publicKey: AAAA
                endpoint: 172.30.2.11:51820
                allowedIPs: [10.102.1.0/24, 100.96.0.2/32]
            """
        ),
        "status.peers[0].publicKey",
    ),
    InvalidCase(
        "nte-status-peer-accepted-ip",
        "a same-cluster peer's accepted network has host bits set",
        _node_tunnel_endpoint(
            f"""
            proxyIPv4: 100.96.0.1
            peers:
              - cluster: member-1
                node: member-1-node-2
                publicKey: {KEY}
                endpoint: 172.30.1.12:51820
                allowedIPs: [100.96.0.2/32]
                acceptedIPs: [10.101.2.5/24]
            """
        ),
        "status.peers[0].acceptedIPs[0]",
    ),
)

ALL_CASES = POLICY_CASES + FEDERATION_CASES + STATUS_CASES
