"""Every kind of the group, and parsing of API documents into the right model."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from crds._base import KubeObject
from crds._yaml import KubectlYamlError, load_documents
from crds.federation import (
    ExportedService,
    FederatedEndpointSlice,
    FederatedService,
    MemberCluster,
    NodeTunnelEndpoint,
    TCPLoadBalancer,
)
from crds.mcs import ClusterProperty, ServiceExport, ServiceImport
from crds.nodes import BalancingNode
from crds.policies import BalancingPolicy, LocalRedirectPolicy

# balancing.elf.io/v1beta1: the policies and the federation's hub-side records.
BALANCING_KINDS: tuple[type[KubeObject], ...] = (
    BalancingPolicy,
    LocalRedirectPolicy,
    MemberCluster,
    ExportedService,
    FederatedService,
    FederatedEndpointSlice,
    TCPLoadBalancer,
    NodeTunnelEndpoint,
    BalancingNode,
)
# The standard multi-cluster kinds members serve (crds.mcs).
MCS_KINDS: tuple[type[KubeObject], ...] = (ServiceExport, ServiceImport, ClusterProperty)
ALL_KINDS: tuple[type[KubeObject], ...] = BALANCING_KINDS + MCS_KINDS
KINDS_BY_NAME: dict[str, type[KubeObject]] = {kind.kind_name: kind for kind in ALL_KINDS}
API_VERSIONS: tuple[str, ...] = tuple(dict.fromkeys(version for kind in ALL_KINDS for version in kind.api_versions()))


class InvalidObjectError(ValueError):
    """An API document that does not fit its schema; the message names every offending field."""

    user_facing = True

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        super().__init__(f"{what} is invalid: " + "; ".join(problems))


def field_path(location: Iterable[int | str]) -> str:
    """A pydantic error location in Kubernetes notation: spec.toPorts[0].port. A key that is not a plain
    name (a space, a newline, a quote) is written quoted, spec.matchLabels["a b"], to keep errors one line."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.isprintable() or any(character in part for character in ' "[]'):
            path += f"[{json.dumps(part)}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_errors(error: ValidationError) -> list[str]:
    problems = []
    for entry in error.errors():
        message = _one_line(entry["msg"].removeprefix("Value error, "))
        path = field_path(entry["loc"])
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _describe(document: Mapping[str, Any]) -> str:
    """`Kind 'name'` for error messages, from whatever the document holds."""
    kind_name = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    kind_text = kind_name if isinstance(kind_name, str) and kind_name in KINDS_BY_NAME else "object"
    return f"{kind_text} {name!r}" if isinstance(name, str) and name else kind_text


def parse_object(document: Any) -> KubeObject:
    """Validate one API document (a dict from YAML/JSON or from the apiserver) into its model.

    Whatever `document` holds, the only exception is InvalidObjectError: a reader of stored objects can
    catch it, report the object (a condition, an Event) and carry on with the others.
    """
    if not isinstance(document, Mapping):
        problem = f"must be a mapping with apiVersion, kind and spec, not {type(document).__name__}"
        raise InvalidObjectError("object", [problem])
    what = _describe(document)
    api_version = document.get("apiVersion")
    kind_name = document.get("kind")
    kind = KINDS_BY_NAME.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None and api_version not in API_VERSIONS:
        raise InvalidObjectError(what, [f"apiVersion: must be one of {', '.join(API_VERSIONS)}, not {api_version!r}"])
    if kind is None:
        raise InvalidObjectError(what, [f"kind: must be one of {', '.join(KINDS_BY_NAME)}, not {kind_name!r}"])
    if api_version not in kind.api_versions():
        expected = " or ".join(kind.api_versions())
        raise InvalidObjectError(what, [f"apiVersion: must be {expected}, not {api_version!r}"])
    try:
        return kind.model_validate(dict(document))
    except ValidationError as error:
        raise InvalidObjectError(what, describe_errors(error)) from None
    except RecursionError:
        raise InvalidObjectError(what, ["nested too deeply"]) from None


def _expand_lists(documents: list[Any]) -> list[Any]:
    """kubectl reads a `kind: List` document (what `kubectl get -o yaml` prints) as its items."""
    expanded: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List" and isinstance(document.get("items"), list):
            expanded.extend(document["items"])
        else:
            expanded.append(document)
    return expanded


def parse_yaml(text: str) -> list[KubeObject]:
    """Every document of a (multi-document) YAML text, read as `kubectl apply -f` reads it, validated.

    Raises InvalidObjectError (one line) for malformed YAML as for an invalid object.
    """
    try:
        documents = load_documents(text)
    except KubectlYamlError as error:
        raise InvalidObjectError("YAML", [_one_line(str(error))]) from None
    return [parse_object(document) for document in _expand_lists(documents)]
