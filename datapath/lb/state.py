"""The node's desired socket-LB state: a YAML/JSON document parsed into pydantic models.

    tiers:
      localRedirect:          # consulted first
        - {ip: 10.96.0.10, port: 53, protocol: UDP, policy: kube-system/node-local-dns,
           qosLimit: 100, backends: [{ip: 10.100.1.7, port: 53}]}
      balancing: []           # then policy VIPs
      service:                # then Services
        - {ip: 10.96.0.10, port: 53, protocol: UDP, affinityTimeoutSeconds: 10800,
           backends: [{ip: 10.100.1.7, port: 53}, {ip: 10.100.2.9, port: 53}]}

`load_state()` validates everything before anything is written, and its error names every
offending entry, e.g. `tiers.service[3] 10.0.0.1:0/TCP: port: must be 1-65535`.
See docs/datapath.md for the full format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datapath.errors import StateError
from datapath.lb import abi

MAX_AFFINITY_TIMEOUT_S = 86400  # Kubernetes' limit for sessionAffinityConfig.clientIP.timeoutSeconds
MAX_BACKENDS_PER_FRONTEND = 16384
NODE_PORT_ANY = "0.0.0.0"  # a frontend on this address is a NodePort: it matches every node address
TIER_FIELDS: dict[str, abi.Tier] = {
    "localRedirect": abi.Tier.LOCAL_REDIRECT,
    "balancing": abi.Tier.BALANCING,
    "service": abi.Tier.SERVICE,
}


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
# Checked by pydantic-core's regex engine: a Python validator per address made parsing 100k
# backends take over a second.
IPv4 = Annotated[str, Field(pattern=IPV4_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]


class BackendSpec(NamedTuple):
    """A backend address. A named tuple, not a model: 100k of them validate in a tenth of the time,
    and whole backend lists compare as plain tuples in the writer's diff."""

    ip: IPv4
    port: Port


class FrontendSpec(BaseModel):
    """One frontend of one tier, with the backends it resolves to and its options."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ip: IPv4
    port: Port
    protocol: Literal["TCP", "UDP"]
    backends: tuple[BackendSpec, ...] = ()
    policy: str = Field(default="", max_length=abi.POLICY_NAME_LEN - 1)
    affinity_timeout_seconds: int = Field(default=0, ge=0, le=MAX_AFFINITY_TIMEOUT_S, alias="affinityTimeoutSeconds")
    qos_limit: int = Field(default=0, ge=0, le=2**32 - 1, alias="qosLimit")

    @property
    def label(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


class Tiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    local_redirect: tuple[FrontendSpec, ...] = Field(default=(), alias="localRedirect")
    balancing: tuple[FrontendSpec, ...] = ()
    service: tuple[FrontendSpec, ...] = ()


class DesiredState(BaseModel):
    """Everything the socket load balancer of one node should resolve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: Tiers = Tiers()

    def entries(self) -> list[tuple[abi.Tier, int, FrontendSpec]]:
        return [
            *((abi.Tier.LOCAL_REDIRECT, i, f) for i, f in enumerate(self.tiers.local_redirect)),
            *((abi.Tier.BALANCING, i, f) for i, f in enumerate(self.tiers.balancing)),
            *((abi.Tier.SERVICE, i, f) for i, f in enumerate(self.tiers.service)),
        ]


@dataclass(frozen=True)
class Capacity:
    """What the kernel maps can hold; the writer passes the real sizes of the pinned maps."""

    frontends: int = 65536
    slots: int = 262144
    policies: int = 16384

    @property
    def backends(self) -> int:
        return self.slots // 2  # a full swap writes every new set before the old ones go


TIER_NAMES = {tier: name for name, tier in TIER_FIELDS.items()}


def entry_path(tier: abi.Tier, index: int) -> str:
    return f"tiers.{TIER_NAMES[tier]}[{index}]"


def _frontend_label(raw: object) -> str:
    if isinstance(raw, Mapping):
        return f"{raw.get('ip', '?')}:{raw.get('port', '?')}/{raw.get('protocol', '?')}"
    return repr(raw)


def _describe(error: ValidationError, raw: object) -> list[str]:
    """One line per problem, each naming the entry (`tiers.service[3] 10.0.0.1:0/TCP`) and field."""
    lines: list[str] = []
    for problem in error.errors():
        location = list(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "string_pattern_mismatch" and location and location[-1] == "ip":
            message = f"{problem['input']!r} is not an IPv4 address (dotted quad)"
        elif problem["type"] == "literal_error" and location and location[-1] == "protocol":
            message = f"unknown protocol {problem['input']!r}: expected TCP or UDP"
        elif problem["type"] in ("greater_than_equal", "less_than_equal") and location[-1] == "port":
            message = "must be 1-65535"
        if len(location) >= 3 and location[0] == "tiers" and isinstance(location[2], int):
            entry = raw
            for step in location[:3]:
                entry = entry[step] if isinstance(entry, (Mapping, list)) else None  # type: ignore[index]
            prefix = f"tiers.{location[1]}[{location[2]}] {_frontend_label(entry)}"
            field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in location[3:]).replace(".[", "[")
            lines.append(f"{prefix}: {field}: {message}" if field else f"{prefix}: {message}")
        else:
            where = ".".join(str(p) for p in location) or "document"
            lines.append(f"{where}: {message}")
    return lines


MAX_PROBLEMS_SHOWN = 20


def _join(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{shown}; and {hidden} more problems" if hidden > 0 else shown


def _backend_problems(tier: abi.Tier, index: int, frontend: FrontendSpec) -> list[str]:
    backends = frontend.backends
    if len(backends) <= MAX_BACKENDS_PER_FRONTEND and len(set(backends)) == len(backends):
        return []
    where = f"{entry_path(tier, index)} {frontend.label}"
    if len(backends) > MAX_BACKENDS_PER_FRONTEND:
        return [
            f"{where}: backends: {len(backends)} backends, more than the "
            f"{MAX_BACKENDS_PER_FRONTEND} one frontend can hold"
        ]
    seen: set[BackendSpec] = set()
    for position, backend in enumerate(backends):
        if backend in seen:
            return [f"{where}: backends[{position}] {backend.ip}:{backend.port}: listed twice"]
        seen.add(backend)
    return []


def parse_state(raw: object, capacity: Capacity = Capacity()) -> DesiredState:
    """Validate a decoded document; raise StateError naming every bad entry."""
    if raw is None:
        raw = {}
    try:
        state = DesiredState.model_validate(raw)
    except ValidationError as error:
        raise StateError("invalid desired state: " + _join(_describe(error, raw))) from None
    problems: list[str] = []
    seen: dict[tuple[abi.Tier, str, int, str], int] = {}
    backends = 0
    policies: set[str] = set()
    for tier, index, frontend in state.entries():
        key = (tier, frontend.ip, frontend.port, frontend.protocol)
        if key in seen:
            problems.append(
                f"{entry_path(tier, index)} {frontend.label}: duplicate frontend, "
                f"already defined at {entry_path(tier, seen[key])}"
            )
        else:
            seen[key] = index
        backends += len(frontend.backends)
        if frontend.backends:
            problems.extend(_backend_problems(tier, index, frontend))
        if frontend.policy:
            policies.add(frontend.policy)
    if len(seen) > capacity.frontends:
        problems.append(f"tiers: {len(seen)} frontends, more than the frontend map holds ({capacity.frontends})")
    if backends > capacity.backends:
        problems.append(
            f"tiers: {backends} backends in all, more than the backend map holds ({capacity.backends}, "
            f"half of its {capacity.slots} slots so that every set can be swapped atomically)"
        )
    if len(policies) > capacity.policies - 1:
        problems.append(f"tiers: {len(policies)} policy names, more than the policy map holds")
    if problems:
        raise StateError("invalid desired state: " + _join(problems))
    return state


def load_state(path: Path, capacity: Capacity = Capacity()) -> DesiredState:
    """Read a YAML or JSON desired-state file (JSON is YAML, but `.json` files get JSON's errors)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise StateError(f"cannot read desired state {path}: {error.strerror}") from None
    try:
        raw: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise StateError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    try:
        return parse_state(raw, capacity)
    except StateError as error:
        raise StateError(f"{path}: {error}") from None
