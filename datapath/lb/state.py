"""The node's desired socket-LB state: a YAML/JSON document parsed into pydantic models.

    nodeAddresses: [172.30.1.2]   # what NodePort (0.0.0.0) frontends match, besides 127.0.0.0/8
    tiers:
      localRedirect:          # consulted first
        - {ip: 10.96.0.10, port: 53, protocol: UDP, policy: kube-system/node-local-dns,
           qosLimit: 100, skipCgroups: [8812], backends: [{ip: 10.100.1.7, port: 53}]}
      balancing: []           # then policy VIPs
      service:                # then Services
        - {ip: 10.96.0.10, port: 53, protocol: UDP, affinityTimeoutSeconds: 10800,
           rejectWhenEmpty: true, backends: [{ip: 10.100.1.7, port: 53}, {ip: 10.100.2.9, port: 53}]}

`load_state()` validates everything before anything is written, and its error is one line naming
every offending entry, e.g. `tiers.service[3] 10.0.0.1:0/TCP: port: must be 1-65535`.
See docs/datapath.md for the full format.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterator, Mapping
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
MAX_PROBLEMS_SHOWN = 20

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
# Checked by pydantic-core's regex engine: a Python validator per address made parsing 100k
# backends take over a second.
IPv4 = Annotated[str, Field(pattern=IPV4_PATTERN)]
# Strict: a boolean (YAML `on`, `true`) or a float is never taken for a number.
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
CgroupId = Annotated[int, Field(ge=1, le=2**64 - 1, strict=True)]
# No control characters: a NUL would cut the name short in the kernel, a newline would split lines.
PolicyName = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


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
    policy: PolicyName = ""
    affinity_timeout_seconds: int = Field(
        default=0, ge=0, le=MAX_AFFINITY_TIMEOUT_S, strict=True, alias="affinityTimeoutSeconds"
    )
    qos_limit: int = Field(default=0, ge=0, le=2**32 - 1, strict=True, alias="qosLimit")
    reject_when_empty: bool = Field(default=False, strict=True, alias="rejectWhenEmpty")
    skip_cgroups: tuple[CgroupId, ...] = Field(default=(), alias="skipCgroups")

    @property
    def label(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"

    def document(self) -> dict[str, Any]:
        """This frontend as a desired-state entry (camelCase, defaults left out)."""
        entry: dict[str, Any] = {"ip": self.ip, "port": self.port, "protocol": self.protocol}
        if self.backends:
            entry["backends"] = [{"ip": backend.ip, "port": backend.port} for backend in self.backends]
        options = self.model_dump(
            by_alias=True,
            exclude_defaults=True,
            include={"policy", "affinity_timeout_seconds", "qos_limit", "reject_when_empty", "skip_cgroups"},
        )
        return entry | {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}


class Tiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    local_redirect: tuple[FrontendSpec, ...] = Field(default=(), alias="localRedirect")
    balancing: tuple[FrontendSpec, ...] = ()
    service: tuple[FrontendSpec, ...] = ()


# Tier -> its field of Tiers, found through the field's document name (abi's tier label).
TIER_FIELDS: dict[abi.Tier, str] = {
    tier: name for tier in abi.Tier for name, info in Tiers.model_fields.items() if (info.alias or name) == tier.label
}


class DesiredState(BaseModel):
    """Everything the socket load balancer of one node should resolve."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    tiers: Tiers = Tiers()
    node_addresses: tuple[IPv4, ...] = Field(default=(), alias="nodeAddresses")

    def tier(self, tier: abi.Tier) -> tuple[FrontendSpec, ...]:
        specs: tuple[FrontendSpec, ...] = getattr(self.tiers, TIER_FIELDS[tier])
        return specs

    def entries(self) -> Iterator[tuple[abi.Tier, int, FrontendSpec]]:
        for tier in abi.Tier:
            for index, spec in enumerate(self.tier(tier)):
                yield tier, index, spec

    def canonical(self) -> DesiredState:
        """The same state in one order: frontends by address, port and protocol; skipped cgroups and
        node addresses sorted. Two states that resolve alike are equal once canonical."""

        def order(spec: FrontendSpec) -> tuple[tuple[int, ...], int, str]:
            return tuple(int(octet) for octet in spec.ip.split(".")), spec.port, spec.protocol

        tiers = {
            TIER_FIELDS[tier]: [
                spec.model_copy(update={"skip_cgroups": tuple(sorted(spec.skip_cgroups))})
                for spec in sorted(self.tier(tier), key=order)
            ]
            for tier in abi.Tier
        }
        nodes = sorted(self.node_addresses, key=lambda ip: tuple(int(octet) for octet in ip.split(".")))
        return DesiredState.model_validate({"tiers": tiers, "node_addresses": nodes})

    def document(self) -> dict[str, Any]:
        """The state as a desired-state document (camelCase, defaults left out): parse_state()
        of it gives this state back."""
        tiers = {tier.label: [spec.document() for spec in self.tier(tier)] for tier in abi.Tier if self.tier(tier)}
        document: dict[str, Any] = {"tiers": tiers}
        if self.node_addresses:
            document["nodeAddresses"] = list(self.node_addresses)
        return document


@dataclass(frozen=True)
class Capacity:
    """What the kernel maps can hold; the writer passes the real sizes of the pinned maps.

    Backends, policy names and skip entries may fill half their map: a change writes the new
    entries before the old ones go, so the other half is the room an atomic switch needs."""

    frontends: int = 65536
    slots: int = 262144
    policies: int = 131072
    nodes: int = 16384
    skips: int = 65536

    @property
    def backends(self) -> int:
        return self.slots // 2

    @property
    def policy_names(self) -> int:
        return self.policies // 2

    @property
    def skip_entries(self) -> int:
        return self.skips // 2


def entry_path(tier: abi.Tier, index: int) -> str:
    return f"tiers.{tier.label}[{index}]"


_REPR = reprlib.Repr()  # bounded: a 10,000-deep list in an error message stays short
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60
_short = _REPR.repr


def _frontend_label(raw: object) -> str:
    if isinstance(raw, Mapping):
        return f"{raw.get('ip', '?')}:{raw.get('port', '?')}/{raw.get('protocol', '?')}"
    return _short(raw)


def _describe(error: ValidationError, raw: object) -> list[str]:
    """One line per problem, each naming the entry (`tiers.service[3] 10.0.0.1:0/TCP`) and field."""
    lines: list[str] = []
    for problem in error.errors():
        location = list(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        last = location[-1] if location else None
        if problem["type"] == "string_pattern_mismatch" and last == "policy":
            message = f"{_short(problem['input'])}: control characters are not allowed in a name"
        elif problem["type"] == "string_pattern_mismatch":  # every other pattern is an IPv4 address
            message = f"{_short(problem['input'])} is not an IPv4 address (dotted quad)"
        elif problem["type"] == "literal_error" and last == "protocol":
            message = f"unknown protocol {_short(problem['input'])}: expected TCP or UDP"
        elif problem["type"] in ("greater_than_equal", "less_than_equal") and last == "port":
            message = "must be 1-65535"
        if len(location) >= 3 and location[0] == "tiers" and isinstance(location[2], int):
            entry = raw
            for step in location[:3]:
                entry = entry[step] if isinstance(entry, (Mapping, list)) else None  # type: ignore[index]
            prefix = f"tiers.{location[1]}[{location[2]}] {_frontend_label(entry)}"
            field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in location[3:]).replace(".[", "[")
            lines.append(f"{prefix}: {field}: {message}" if field else f"{prefix}: {message}")
        else:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location).lstrip(".") or "document"
            lines.append(f"{where}: {message}")
    return lines


def _join(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{shown}; and {hidden} more problems" if hidden > 0 else shown


def _first_duplicate(values: tuple[Any, ...]) -> int | None:
    seen: set[Any] = set()
    for position, value in enumerate(values):
        if value in seen:
            return position
        seen.add(value)
    return None


def _may_have_problems(frontend: FrontendSpec) -> bool:
    """A quick look that clears almost every frontend; _frontend_problems says what is wrong."""
    backends = frontend.backends
    return (
        len(backends) > MAX_BACKENDS_PER_FRONTEND
        or len(set(backends)) != len(backends)
        or len(frontend.policy) * 4 >= abi.POLICY_NAME_LEN  # up to 4 bytes of UTF-8 a character
        or len(set(frontend.skip_cgroups)) != len(frontend.skip_cgroups)
    )


def _frontend_problems(tier: abi.Tier, index: int, frontend: FrontendSpec) -> list[str]:
    where = f"{entry_path(tier, index)} {frontend.label}"
    problems: list[str] = []
    backends = frontend.backends
    if len(backends) > MAX_BACKENDS_PER_FRONTEND:
        problems.append(
            f"{where}: backends: {len(backends)} backends, more than the "
            f"{MAX_BACKENDS_PER_FRONTEND} one frontend can hold"
        )
    elif len(set(backends)) != len(backends):
        position = _first_duplicate(backends)
        assert position is not None
        problems.append(
            f"{where}: backends[{position}] {backends[position].ip}:{backends[position].port}: listed twice"
        )
    if frontend.policy and len(frontend.policy.encode()) >= abi.POLICY_NAME_LEN:
        problems.append(
            f"{where}: policy: {len(frontend.policy.encode())} bytes of UTF-8, more than the "
            f"{abi.POLICY_NAME_LEN - 1} a name can hold"
        )
    skipped = _first_duplicate(frontend.skip_cgroups)
    if skipped is not None:
        problems.append(f"{where}: skipCgroups[{skipped}] {frontend.skip_cgroups[skipped]}: listed twice")
    return problems


def parse_state(raw: object, capacity: Capacity = Capacity()) -> DesiredState:
    """Validate a decoded document; raise StateError (one line) naming every bad entry.

    The document must say what it wants: `tiers: {}` means "no frontends", but an empty document
    (nothing, `null`, `~`, `---`) or one without `tiers` is refused, so that a truncated file can
    never remove every frontend."""
    if raw is None:
        raise StateError("invalid desired state: the document is empty; write `tiers: {}` to remove every frontend")
    if isinstance(raw, Mapping) and "tiers" not in raw:
        raise StateError("invalid desired state: tiers: missing; write `tiers: {}` to remove every frontend")
    try:
        state = DesiredState.model_validate(raw)
    except ValidationError as error:
        raise StateError("invalid desired state: " + _join(_describe(error, raw))) from None
    problems: list[str] = []
    seen: dict[tuple[abi.Tier, str, int, str], int] = {}
    backends = skips = 0
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
        skips += len(frontend.skip_cgroups)
        if _may_have_problems(frontend):
            problems.extend(_frontend_problems(tier, index, frontend))
        if frontend.policy:
            policies.add(frontend.policy)
    duplicate = _first_duplicate(state.node_addresses)
    if duplicate is not None:
        problems.append(f"nodeAddresses[{duplicate}] {state.node_addresses[duplicate]}: listed twice")
    if NODE_PORT_ANY in state.node_addresses:
        problems.append(f"nodeAddresses: {NODE_PORT_ANY} is the NodePort wildcard, not a node address")
    if len(state.node_addresses) > capacity.nodes:
        problems.append(
            f"nodeAddresses: {len(state.node_addresses)} addresses, more than the map holds ({capacity.nodes})"
        )
    if len(seen) > capacity.frontends:
        problems.append(f"tiers: {len(seen)} frontends, more than the frontend map holds ({capacity.frontends})")
    if backends > capacity.backends:
        problems.append(
            f"tiers: {backends} backends in all, more than the backend map holds ({capacity.backends}, "
            f"half of its {capacity.slots} slots so that every set can be swapped atomically)"
        )
    if len(policies) > capacity.policy_names:
        problems.append(
            f"tiers: {len(policies)} policy names, more than the policy map holds ({capacity.policy_names}, "
            f"half of its {capacity.policies} entries so that names can change atomically)"
        )
    if skips > capacity.skip_entries:
        problems.append(f"tiers: {skips} skipCgroups entries in all, more than the map holds ({capacity.skip_entries})")
    if problems:
        raise StateError("invalid desired state: " + _join(problems))
    return state


def load_state(path: Path, capacity: Capacity = Capacity()) -> DesiredState:
    """Read a YAML or JSON desired-state file (JSON is YAML, but `.json` files get JSON's errors).

    Every way a file can be unreadable is a one-line StateError naming the file."""
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_bytes().decode()
    except OSError as error:
        raise StateError(f"cannot read desired state {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise StateError(f"{path}: not UTF-8: byte {error.start} is {error.object[error.start]:#04x}") from None
    try:
        raw: Any = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise StateError(f"{path}: not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except yaml.MarkedYAMLError as error:
        where = (
            f" at line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}"
            if (error.problem_mark)
            else ""
        )
        raise StateError(f"{path}: not valid YAML: {error.problem or error.context}{where}") from None
    except yaml.YAMLError as error:
        raise StateError(f"{path}: not valid YAML: {error}") from None
    except RecursionError:
        raise StateError(f"{path}: not a desired state: nested too deeply to read") from None
    try:
        return parse_state(raw, capacity)
    except StateError as error:
        raise StateError(f"{path}: {error}") from None
