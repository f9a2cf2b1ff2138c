"""Hypothesis strategies for policy documents (valid and mutated), and a direct client for the apiserver.

The documents are what a hostile user could send: valid policies of every shape, then one to three
mutations (a value swapped for a troublesome one, a key dropped, nulled, renamed to snake_case, an
unknown key, a duplicated list item). tests/crds/test_fuzz.py checks that the models and a real
apiserver accept and refuse the same ones.

BALANCING_FUZZ_EXAMPLES sets how many documents each fuzz test tries (default 300; the long run in
docs/robustness.md uses 5000).
"""

from __future__ import annotations

import base64
import copy
import http.client
import ipaddress
import json
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("BALANCING_FUZZ_EXAMPLES", "300"))
API_PATH = "/apis/balancing.elf.io/v1beta1"
PLURALS = {"BalancingPolicy": "balancingpolicies", "LocalRedirectPolicy": "localredirectpolicies"}

Json = Any
Path_ = tuple[str | int, ...]

# --- valid documents -------------------------------------------------------------------------------------

PORT_NAMES = ["http", "https", "dns", "dns-tcp", "p1", "p2", "metrics", "9p", "a", "web-1", "x1-y2-z3"]
LABEL_KEYS = ["app", "k8s-app", "tier", "app.kubernetes.io/name", "example.com/role", "A_b.c"]
LABEL_VALUES = ["web", "node-local-dns", "a", "v1.2_3", "", "X"]


def _ipv4() -> st.SearchStrategy[str]:
    return st.integers(1, 2**32 - 1).map(lambda number: str(ipaddress.IPv4Address(number)))


def _dns_label() -> st.SearchStrategy[str]:
    return st.sampled_from(["default", "kube-system", "web", "a", "shop-1", "x0"])


@st.composite
def _selector(draw: st.DrawFn) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(LABEL_KEYS), min_size=1, max_size=3, unique=True))
        selector["matchLabels"] = {key: draw(st.sampled_from(LABEL_VALUES)) for key in keys}
    if not selector or draw(st.booleans()):
        terms = []
        for _ in range(draw(st.integers(1, 2))):
            operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
            term: dict[str, Any] = {"key": draw(st.sampled_from(LABEL_KEYS)), "operator": operator}
            if operator in ("In", "NotIn"):
                term["values"] = draw(st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=3))
            terms.append(term)
        selector["matchExpressions"] = terms
    return selector


@st.composite
def _port_lists(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A frontend and a backend toPorts that pair: same names and protocols, or one port each."""
    count = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(PORT_NAMES), min_size=count, max_size=count, unique=True))
    protocols = draw(st.lists(st.sampled_from(["TCP", "UDP", None]), min_size=count, max_size=count))
    numbers = draw(st.lists(st.integers(1, 65535), min_size=count, max_size=count, unique=True))
    named = count > 1 or draw(st.booleans())

    def port(number: int, protocol: str | None, name: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"port": str(number)}
        if protocol is not None:
            entry["protocol"] = protocol
        if name is not None:
            entry["name"] = name
        return entry

    frontend = [port(n, p, name if named else None) for n, p, name in zip(numbers, protocols, names, strict=True)]
    back_named = named and (count > 1 or draw(st.booleans()))
    backend = [
        port(draw(st.integers(1, 65535)), p, name if back_named else None)
        for p, name in zip(protocols, names, strict=True)
    ]
    return frontend, draw(st.permutations(backend)) if back_named else backend


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["BalancingPolicy", "LocalRedirectPolicy"]))
    front_ports, back_ports = draw(_port_lists())
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["enabled"] = draw(st.booleans())
    if draw(st.booleans()):
        matcher: dict[str, Any] = {"namespace": draw(_dns_label()), "serviceName": draw(_dns_label())}
        if draw(st.integers(0, 4)):
            matcher["toPorts"] = front_ports
        spec["frontend"] = {"serviceMatcher": matcher}
    else:
        spec["frontend"] = {"addressMatcher": {"ip": draw(_ipv4()), "toPorts": front_ports}}
    config: dict[str, Any] = {}
    if draw(st.booleans()):
        config["nodeLabelSelector"] = draw(_selector())
    if kind == "BalancingPolicy":
        if draw(st.booleans()):
            config["enableOutCluster"] = draw(st.booleans())
        if draw(st.booleans()):
            endpoint: dict[str, Any] = {"endpointSelector": draw(_selector()), "toPorts": back_ports}
            if draw(st.booleans()):
                endpoint["redirectMode"] = draw(st.sampled_from(["podEndpoint", "hostPort", "nodeProxy"]))
            spec["backend"] = {"serviceEndpoint": endpoint}
        else:
            addresses = draw(st.lists(_ipv4(), min_size=1, max_size=4, unique=True))
            spec["backend"] = {"addressEndpoint": {"addresses": addresses, "toPorts": back_ports}}
    else:
        if draw(st.booleans()):
            config["redirectQosLimit"] = draw(st.integers(0, 1_000_000_000))
        spec["backend"] = {"endpointSelector": draw(_selector()), "toPorts": back_ports}
    empty_config_too = draw(st.booleans())
    if config or empty_config_too:
        spec["config"] = config
    return {"apiVersion": "balancing.elf.io/v1beta1", "kind": kind, "metadata": {"name": "bft-fuzz"}, "spec": spec}


TIMES = ["2026-01-01T00:00:00Z", "2026-01-01T10:20:30.123456789+05:30", "0001-01-01T00:00:00-23:59"]


@st.composite
def valid_statuses(draw: st.DrawFn) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if draw(st.booleans()):
        status["observedGeneration"] = draw(st.integers(0, 2**63 - 1))
    if draw(st.booleans()):
        status["backendCount"] = draw(st.integers(0, 10_000))
    types = draw(st.lists(st.sampled_from(["Ready", "Conflict", "Accepted", "example.com/Synced"]), unique=True))
    status["conditions"] = [
        {
            "type": condition_type,
            "status": draw(st.sampled_from(["True", "False", "Unknown"])),
            "reason": draw(st.sampled_from(["Programmed", "Conflict", "A", "Some_reason:x,y"])),
            "message": draw(st.sampled_from(["", "programmed on 4 nodes", "é\n\"quoted\""])),
            "lastTransitionTime": draw(st.sampled_from(TIMES)),
            **({"observedGeneration": draw(st.integers(0, 100))} if draw(st.booleans()) else {}),
        }
        for condition_type in types
    ]
    return status


# --- mutations -------------------------------------------------------------------------------------------

TROUBLESOME_VALUES: list[Json] = [
    "", "0", "00", "080", "80", "65535", "65536", "8_0", "+80", " 80", "80 ", "1e2", "\uff18\uff10", "\u0668\u0660",
    "a--b", "-a", "a-", "ab-c", "9p", "abcdefghijklmno", "abcdefghijklmnop", "Web", "web\n", "we b", "é",
    "TCP", "tcp", "UDP", "SCTP", "podEndpoint", "nodePort", "In", "Exists", "in",
    "10.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1", "10.0.0.1/32", "fd00::1", "1.2.3",
    "2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", "2026-01-01T00:00:00", "2026-01-01", "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+24:00", "0000-01-01T00:00:00Z", "2026-01-01T00:00:00.1234567890Z",
    "a" * 63, "a" * 64, "a" * 253 + "/b", "a" * 254 + "/b", "example.com/", "/app", "a/b/c", "app\n",
    True, False, 0, 1, -1, 5, 5.0, 5.5, -0.0, 1e16, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
    None, [], {}, [None], ["10.0.0.1"], {"a": "b"}, {"app\n": "web"},
]


FULLWIDTH_DIGITS = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))


def _camel_to_snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda found: "_" + found.group(1).lower(), name)


def _paths(value: Json, prefix: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _parent(document: Json, path: Path_) -> Json:
    for part in path[:-1]:
        document = document[part]
    return document


@st.composite
def _mutate_once(draw: st.DrawFn, document: Json) -> Json:
    paths = list(_paths(document))
    if not paths:
        return document
    path = draw(st.sampled_from(paths))
    parent, last = _parent(document, path), path[-1]
    value = parent[last]
    operation = draw(
        st.sampled_from(["replace", "replace", "replace", "edit", "delete", "null", "unknown", "snake", "duplicate"])
    )
    if operation == "replace":
        parent[last] = copy.deepcopy(draw(st.sampled_from(TROUBLESOME_VALUES)))
    elif operation == "edit" and isinstance(value, str):
        edit: Callable[[str], str] = draw(
            st.sampled_from([
                lambda s: "0" + s, lambda s: s + "\n", lambda s: s.upper(), lambda s: s + "-", lambda s: s * 20,
                lambda s: s.replace("-", "--"), lambda s: s.translate(FULLWIDTH_DIGITS),
            ])
        )
        parent[last] = edit(value)
    elif operation == "edit" and isinstance(value, int) and not isinstance(value, bool):
        parent[last] = draw(st.sampled_from([float(value), value + 0.5, str(value), -value, value * 2**40]))
    elif operation == "delete":
        del parent[last]
    elif operation == "null":
        parent[last] = None
    elif operation == "unknown" and isinstance(value, dict):
        value[draw(st.sampled_from(["bogus", "toports", "Port", "service_name"]))] = "x"
    elif operation == "snake" and isinstance(last, str) and _camel_to_snake(last) != last:
        parent[_camel_to_snake(last)] = parent.pop(last)
    elif operation == "duplicate" and isinstance(value, list) and value:
        value.append(copy.deepcopy(value[draw(st.integers(0, len(value) - 1))]))
    return document


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Json]) -> Json:
    """A valid document (about a third of the time) or one with one to three mutations."""
    document = copy.deepcopy(draw(valid))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        document = draw(_mutate_once(document))
    return document


@st.composite
def policy_documents(draw: st.DrawFn) -> dict[str, Any]:
    document = draw(valid_policies())
    document["spec"] = draw(mutated(st.just(document["spec"])))
    return document


# --- the apiserver, spoken to directly (fast: one HTTPS request per document) ------------------------------


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    detail: str
    stored: dict[str, Any] | None = None


class DirectApi:
    """Server-side dry runs against one apiserver, with the credentials of a kubeconfig."""

    def __init__(self, kubeconfig_json: str) -> None:
        config = json.loads(kubeconfig_json)
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self._directory = tempfile.TemporaryDirectory(prefix="bft-fuzz-")
        files = Path(self._directory.name)
        context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if "client-certificate-data" in user:
            (files / "client.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
            (files / "client.key").write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(files / "client.crt", files / "client.key")
        if "token" in user:
            self._headers["Authorization"] = f"Bearer {user['token']}"
        server = cluster["server"].removeprefix("https://")
        host, _, port = server.partition(":")
        self._host, self._port, self._context = host, int(port or 443), context
        self._local = threading.local()

    def close(self) -> None:
        self._directory.cleanup()

    def _connection(self) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=30)
            self._local.connection = connection
        return connection

    def request(self, method: str, path: str, body: Json = None) -> tuple[int, dict[str, Any]]:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=payload, headers=self._headers)
                response = connection.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _verdict(self, status: int, answer: dict[str, Any]) -> Verdict:
        if status in (200, 201):
            return Verdict(True, "accepted", answer)
        if status in (400, 422):
            return Verdict(False, str(answer.get("message", answer)))
        raise AssertionError(f"apiserver answered {status}: {answer}")

    def dry_run_create(self, document: dict[str, Any]) -> Verdict:
        path = f"{API_PATH}/{PLURALS[document['kind']]}?dryRun=All&fieldValidation=Strict"
        return self._verdict(*self.request("POST", path, document))

    def dry_run_status(self, stored: dict[str, Any], status: Json) -> Verdict:
        body = {**stored, "status": status}
        name = stored["metadata"]["name"]
        path = f"{API_PATH}/{PLURALS[stored['kind']]}/{name}/status?dryRun=All&fieldValidation=Strict"
        return self._verdict(*self.request("PUT", path, body))
