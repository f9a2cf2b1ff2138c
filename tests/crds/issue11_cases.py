"""Regression rows for issue 11: objects on which the CEL rules and the models used to disagree.

Each row is refused by both (tests/crds/test_models.py and test_apiserver.py run them with the rest of
the table in cases.py). VALID_CASES are the other half: objects both must accept, read the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.crds.cases import KEY, POD_BACKEND, SERVICE_FRONTEND, InvalidCase, _bp, _lrp, _namespaced

LONG_PREFIX = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}"  # 254 characters: one too many for a prefix
NODE_LOCAL_DNS_BACKEND = """
backend:
  endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
  toPorts: [{port: "53", protocol: UDP}]
"""
SINGLE_UDP_VIP = """
frontend:
  addressMatcher:
    ip: 169.254.20.10
    toPorts: [{port: "53", protocol: UDP}]
"""

POLICY_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "port-leading-zero",
        '"080" beside "80" on one protocol: CEL compared strings, the model numbers (1)',
        _bp(
            "bft-port-080",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts:
                  - {port: "80", protocol: TCP, name: a}
                  - {port: "080", protocol: TCP, name: b}
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts:
                  - {port: "80", protocol: TCP, name: a}
                  - {port: "81", protocol: TCP, name: b}
            """,
        ),
        "spec.frontend.addressMatcher.toPorts[1].port",
    ),
    InvalidCase(
        "port-fullwidth-digits",
        "port 80 in fullwidth digits (2)",
        _bp(
            "bft-port-fullwidth",
            """
            frontend:
              addressMatcher:
                ip: 169.254.10.10
                toPorts: [{port: "\uff18\uff10", protocol: TCP}]
            backend:
              addressEndpoint:
                addresses: ["10.0.0.1"]
                toPorts: [{port: "80", protocol: TCP}]
            """,
        ),
        "spec.frontend.addressMatcher.toPorts[0].port",
    ),
    InvalidCase(
        "port-arabic-indic-digits",
        'port "٨٠" in Arabic-Indic digits (2)',
        _bp(
            "bft-port-arabic",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "٨٠", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.toPorts[0].port",
    ),
    InvalidCase(
        "label-key-trailing-newline",
        "a matchLabels key ending in a newline (2)",
        _bp(
            "bft-label-newline",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {"app\\n": web}}
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.endpointSelector.matchLabels",
    ),
    InvalidCase(
        "selector-key-trailing-newline",
        "a matchExpressions key ending in a newline (2)",
        _bp(
            "bft-expr-newline",
            SERVICE_FRONTEND,
            """
            backend:
              serviceEndpoint:
                endpointSelector:
                  matchExpressions: [{key: "app\\n", operator: Exists}]
                toPorts: [{port: "8080", protocol: TCP, name: http}]
            """,
        ),
        "spec.backend.serviceEndpoint.endpointSelector.matchExpressions[0].key",
    ),
    InvalidCase(
        "snake-case-field",
        "serviceName written as service_name (2)",
        _bp(
            "bft-snake",
            """
            frontend:
              serviceMatcher:
                namespace: default
                service_name: web
                toPorts: [{port: "80", protocol: TCP}]
            backend:
              serviceEndpoint:
                endpointSelector: {matchLabels: {app: web}}
                toPorts: [{port: "8080", protocol: TCP}]
            """,
        ),
        "spec.frontend.serviceMatcher.service_name",
    ),
    InvalidCase(
        "label-key-prefix-too-long",
        "a matchLabels key whose prefix has 254 characters (4)",
        _lrp(
            "bft-long-prefix",
            SINGLE_UDP_VIP,
            f"""
            backend:
              endpointSelector: {{matchLabels: {{"{LONG_PREFIX}/app": dns}}}}
              toPorts: [{{port: "53", protocol: UDP}}]
            """,
        ),
        "spec.backend.endpointSelector.matchLabels",
    ),
    InvalidCase(
        "selector-key-prefix-too-long",
        "a matchExpressions key whose prefix has 254 characters (4)",
        _lrp(
            "bft-long-prefix-expr",
            SINGLE_UDP_VIP,
            f"""
            backend:
              endpointSelector:
                matchExpressions: [{{key: "{LONG_PREFIX}/app", operator: Exists}}]
              toPorts: [{{port: "53", protocol: UDP}}]
            """,
        ),
        "spec.backend.endpointSelector.matchExpressions[0].key",
    ),
    InvalidCase(
        "port-name-digits-only",
        'port name "80" has no letter (4)',
        _bp(
            "bft-name-digits",
            SERVICE_FRONTEND.replace("name: http", 'name: "80"'),
            POD_BACKEND.replace("name: http", 'name: "80"'),
        ),
        "spec.frontend.serviceMatcher.toPorts[0].name",
    ),
    InvalidCase(
        "port-name-double-hyphen",
        'port name "a--b" (4)',
        _bp("bft-name-hyphens", SERVICE_FRONTEND, POD_BACKEND.replace("name: http", "name: a--b")),
        "spec.backend.serviceEndpoint.toPorts[0].name",
    ),
    InvalidCase(
        "port-name-too-long",
        "port name of 16 characters",
        _bp("bft-name-long", SERVICE_FRONTEND, POD_BACKEND.replace("name: http", "name: abcdefghijklmnop")),
        "spec.backend.serviceEndpoint.toPorts[0].name",
    ),
    InvalidCase(
        "yaml-080-port-name",
        "`name: 080` is the number 80 to kubectl (go-yaml), not a string (5)",
        _bp("bft-name-080", SERVICE_FRONTEND, POD_BACKEND.replace("name: http", "name: 080")),
        "spec.backend.serviceEndpoint.toPorts[0].name",
    ),
    InvalidCase(
        "yaml-enabled-maybe",
        "`enabled: maybe` is a string to kubectl too (5)",
        _bp("bft-enabled-maybe", "enabled: maybe", SERVICE_FRONTEND, POD_BACKEND),
        "spec.enabled",
    ),
    InvalidCase(
        "service-frontend-empty-ports",
        "serviceMatcher.toPorts may be omitted, but not empty",
        _bp(
            "bft-empty-ports",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
                toPorts: []
            """,
            POD_BACKEND,
        ),
        "spec.frontend.serviceMatcher.toPorts",
    ),
    InvalidCase(
        "qos-limit-fraction",
        "redirectQosLimit 5.5 is not an integer",
        _lrp(
            "bft-qos-fraction",
            "config: {redirectQosLimit: 5.5}",
            SINGLE_UDP_VIP,
            NODE_LOCAL_DNS_BACKEND,
        ),
        "spec.config.redirectQosLimit",
    ),
)


def _condition(**fields: object) -> dict[str, object]:
    return {
        "type": "Ready",
        "status": "True",
        "reason": "Programmed",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        **fields,
    }


def _nte_with_status(status: dict[str, Any]) -> str:
    return _namespaced(
        "NodeTunnelEndpoint",
        "member-1.member-1-node-8",
        f"""
        cluster: member-1
        node: member-1-node-8
        publicKey: {KEY}
        endpoint: 172.30.1.11:51820
        """,
        status=json.dumps(status),
    )


STATUS_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "condition-time-without-zone",
        "lastTransitionTime without a zone (2)",
        _nte_with_status({"conditions": [_condition(lastTransitionTime="2026-01-01T00:00:00")]}),
        "status.conditions[0].lastTransitionTime",
    ),
    InvalidCase(
        "condition-time-date-only",
        "lastTransitionTime is a date (2)",
        _nte_with_status({"conditions": [_condition(lastTransitionTime="2026-01-01")]}),
        "status.conditions[0].lastTransitionTime",
    ),
    InvalidCase(
        "condition-time-no-such-day",
        "lastTransitionTime on February 30",
        _nte_with_status({"conditions": [_condition(lastTransitionTime="2026-02-30T00:00:00Z")]}),
        "status.conditions[0].lastTransitionTime",
    ),
    InvalidCase(
        "condition-time-a-list",
        "lastTransitionTime: [] (v1.35's date-time format check lets a list through; found by the long fuzz run)",
        _nte_with_status({"conditions": [_condition(lastTransitionTime=[])]}),
        "status.conditions[0].lastTransitionTime",
    ),
    InvalidCase(
        "condition-type-duplicate",
        "two conditions of type Ready (2)",
        _nte_with_status({"conditions": [_condition(), _condition(status="False", reason="Down")]}),
        "status.conditions[1]",
        python_field="status.conditions",
    ),
    InvalidCase(
        "observed-generation-2-64",
        "observedGeneration 2^64 does not fit an int64 (2)",
        _nte_with_status({"observedGeneration": 2**64}),
        "status.observedGeneration",
    ),
)


@dataclass(frozen=True)
class ValidCase:
    """An object both validators accept; `expected` is part of what the stored spec must hold."""

    id: str
    description: str
    yaml: str
    expected: dict[str, Any]


VALID_CASES: tuple[ValidCase, ...] = (
    ValidCase(
        "null-on-defaulted-fields",
        "explicit null on enabled, protocol, redirectMode, enableOutCluster: pruned, then defaulted (3)",
        _bp(
            "bft-nulls",
            "enabled: null",
            "config: {enableOutCluster: null}",
            SERVICE_FRONTEND.replace("protocol: TCP", "protocol: null"),
            POD_BACKEND.replace("redirectMode: podEndpoint", "redirectMode: null"),
        ),
        {"enabled": True, "config": {"enableOutCluster": False}},
    ),
    ValidCase(
        "null-label-value",
        "a null matchLabels value is pruned like a null field (found by the long fuzz run)",
        _lrp(
            "bft-null-label",
            SINGLE_UDP_VIP,
            """
            backend:
              endpointSelector:
                matchLabels: {app: null}
                matchExpressions: [{key: app, operator: Exists}]
              toPorts: [{port: "53", protocol: UDP}]
            """,
        ),
        {"backend": {"endpointSelector": {"matchLabels": {}}}},
    ),
    ValidCase(
        "integral-float",
        "redirectQosLimit: 5.0 is the integer 5 (3)",
        _lrp(
            "bft-qos-float",
            "config: {redirectQosLimit: 5.0}",
            SINGLE_UDP_VIP,
            NODE_LOCAL_DNS_BACKEND,
        ),
        {"config": {"redirectQosLimit": 5}},
    ),
    ValidCase(
        "yaml-enabled-n",
        "`enabled: n` is false to kubectl (go-yaml reads YAML 1.1 booleans) (5)",
        _bp("bft-enabled-n", "enabled: n", SERVICE_FRONTEND, POD_BACKEND),
        {"enabled": False},
    ),
    ValidCase(
        "service-frontend-without-ports",
        "a serviceMatcher without toPorts takes all of the Service's ports (issue 9)",
        _bp(
            "bft-all-ports",
            """
            frontend:
              serviceMatcher:
                namespace: default
                serviceName: web
            """,
            POD_BACKEND,
        ),
        {"frontend": {"serviceMatcher": {"namespace": "default", "serviceName": "web"}}},
    ),
    ValidCase(
        "lrp-service-frontend-without-ports",
        "a LocalRedirectPolicy serviceMatcher without toPorts, several named backend ports (issue 9)",
        _lrp(
            "bft-lrp-all-ports",
            """
            frontend:
              serviceMatcher:
                namespace: kube-system
                serviceName: kube-dns
            backend:
              endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
              toPorts:
                - {port: "53", protocol: UDP, name: dns}
                - {port: "53", protocol: TCP, name: dns-tcp}
            """,
        ),
        {"frontend": {"serviceMatcher": {"namespace": "kube-system", "serviceName": "kube-dns"}}},
    ),
    ValidCase(
        "port-name-digits-and-letter",
        "port names may start with digits when they hold a letter (IANA_SVC_NAME)",
        _bp(
            "bft-name-9p",
            SERVICE_FRONTEND.replace("name: http", "name: 9p-x"),
            POD_BACKEND.replace("name: http", "name: 9p-x"),
        ),
        {"backend": {"serviceEndpoint": {"toPorts": [{"port": "8080", "protocol": "TCP", "name": "9p-x"}]}}},
    ),
)
