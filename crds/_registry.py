"""Every kind of the group, and parsing of API documents into the right model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from crds._base import API_VERSION, KubeObject
from crds.federation import (
    FederatedEndpointSlice,
    FederatedService,
    MemberCluster,
    NodeTunnelEndpoint,
    ServiceExport,
    TCPLoadBalancer,
)
from crds.nodes import BalancingNode
from crds.policies import BalancingPolicy, LocalRedirectPolicy

ALL_KINDS: tuple[type[KubeObject], ...] = (
    BalancingPolicy,
    LocalRedirectPolicy,
    MemberCluster,
    ServiceExport,
    FederatedService,
    FederatedEndpointSlice,
    TCPLoadBalancer,
    NodeTunnelEndpoint,
    BalancingNode,
)
KINDS_BY_NAME: dict[str, type[KubeObject]] = {kind.kind_name: kind for kind in ALL_KINDS}


class InvalidObjectError(ValueError):
    """An API document that does not fit its schema; the message names every offending field."""

    user_facing = True

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        super().__init__(f"{what} is invalid: " + "; ".join(problems))


def field_path(location: Iterable[int | str]) -> str:
    """A pydantic error location in Kubernetes notation: spec.toPorts[0].port."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def describe_errors(error: ValidationError) -> list[str]:
    problems = []
    for entry in error.errors():
        message = entry["msg"].removeprefix("Value error, ")
        path = field_path(entry["loc"])
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_object(document: Mapping[str, Any]) -> KubeObject:
    """Validate one API document (a dict from YAML/JSON or from the apiserver) into its model."""
    kind_name = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    what = f"{kind_name or 'object'} {name!r}" if name else str(kind_name or "object")
    if document.get("apiVersion") != API_VERSION:
        raise InvalidObjectError(what, [f"apiVersion: must be {API_VERSION}, not {document.get('apiVersion')!r}"])
    kind = KINDS_BY_NAME.get(str(kind_name))
    if kind is None:
        raise InvalidObjectError(what, [f"kind: must be one of {', '.join(KINDS_BY_NAME)}, not {kind_name!r}"])
    try:
        return kind.model_validate(dict(document))
    except ValidationError as error:
        raise InvalidObjectError(what, describe_errors(error)) from None


def parse_yaml(text: str) -> list[KubeObject]:
    """Every document of a (multi-document) YAML text, validated."""
    return [parse_object(document) for document in yaml.safe_load_all(text) if document is not None]
