"""Small facts about API objects the hub's pure modules share: identity and age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from crds import KubeObject

NEWEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Ref:
    """Which object: what writes and Events point at (uid for Events, resourceVersion for writes)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def ref(obj: KubeObject) -> Ref:
    return Ref(obj.kind, obj.metadata.namespace or "", obj.metadata.name or "")


def created_at(obj: KubeObject) -> datetime:
    """metadata.creationTimestamp; an object not stored yet counts as the newest."""
    created = (obj.metadata.model_extra or {}).get("creationTimestamp")
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            pass
    return NEWEST


def uid(obj: KubeObject) -> str | None:
    return obj.metadata.uid


def resource_version(obj: KubeObject) -> str | None:
    return obj.metadata.resource_version
