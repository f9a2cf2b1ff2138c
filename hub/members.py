"""Member clusters as the hub judges them, pure: registration, liveness, pod CIDR overlaps.

- **The namespace is the identity.** A member's objects live in its own hub namespace; its
  registration is the MemberCluster named like that namespace. One named otherwise is refused
  (`Valid=False/ClusterMismatch`): a member cannot speak for another cluster.
- **Liveness.** A member is alive while its last heartbeat is younger than its
  `heartbeatTimeoutSeconds` (`Ready=True/Heartbeating`); after that it is `Ready=False/
  HeartbeatExpired` (or `NoHeartbeat` before the first one). A hub that could not hear (its API
  server or its watches were down, or the operator just started) expires nobody who was Ready:
  those members keep their verdict until one timeout after the hub hears again (`held_until`).
- **Pod CIDR overlaps are refused, the newer member loses.** A member's networks are its
  `spec.podCIDRs` and its nodes' NodeTunnelEndpoint pod CIDRs. Members are taken in order of
  registration (the MemberCluster's creation time, then name); one whose networks overlap an
  already accepted member's is refused (`Valid=False/PodCIDROverlap`): it stays out of the mesh and
  the catalogue, and the member it overlaps keeps working. Both are told, naming both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crds import MemberCluster, NodeTunnelEndpoint
from hub.conditions import rfc3339
from hub.mesh import CidrClaim, PodCIDROverlap, find_overlaps, key_of
from hub.objects import created_at

# Condition reasons on MemberCluster.
HEARTBEATING = "Heartbeating"
HEARTBEAT_EXPIRED = "HeartbeatExpired"
NO_HEARTBEAT = "NoHeartbeat"
STILL_DEAF = datetime.max.replace(tzinfo=UTC)  # `held_until` while the hub cannot hear
VALID = "Valid"
CLUSTER_MISMATCH = "ClusterMismatch"
POD_CIDR_OVERLAP = "PodCIDROverlap"


@dataclass(frozen=True)
class Liveness:
    alive: bool
    reason: str
    message: str
    changes_at: datetime | None  # when `alive` turns False on its own (None: it will not)


def liveness(member: MemberCluster, now: datetime, held_until: datetime | None = None) -> Liveness:
    """Alive while the last heartbeat is younger than the timeout. Messages name times, never ages,
    so that an unchanged verdict reads the same at every reconcile (and is not written again).

    `held_until`: the hub was deaf; a member it last judged Ready stays Ready until then (STILL_DEAF:
    the hub cannot hear yet)."""
    timeout = member.spec.heartbeat_timeout_seconds
    last = member.status.last_heartbeat_time if member.status else None
    if last is None:
        return Liveness(False, NO_HEARTBEAT, "the member has not sent a heartbeat yet", None)
    expires = last + timedelta(seconds=timeout)
    heartbeating = f"heartbeats arrive within the {timeout}s timeout"
    if now < expires:
        return Liveness(True, HEARTBEATING, heartbeating, expires)
    if held_until is not None and now < held_until and _judged_ready(member):
        return Liveness(True, HEARTBEATING, heartbeating, None if held_until == STILL_DEAF else held_until)
    return Liveness(False, HEARTBEAT_EXPIRED, f"no heartbeat since {rfc3339(last)} (timeout {timeout}s): "
                    "its endpoints left the catalogue", None)


def _judged_ready(member: MemberCluster) -> bool:
    conditions = (member.status.conditions if member.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def registration_problem(namespace: str, member: MemberCluster) -> str | None:
    """Why a MemberCluster in `namespace` is not that member's registration, or None."""
    if member.metadata.name != namespace:
        return (f"MemberCluster {member.metadata.name!r} is in namespace {namespace!r}: a member registers "
                f"under its own namespace's name, so it must be named {namespace!r}")
    return None


@dataclass(frozen=True)
class Overlap:
    """A member refused for overlapping an older one, or an older one told about it."""

    cluster: str
    other: str
    refused: bool  # True: `cluster` is the refused (newer) one
    message: str


def refuse_overlaps(
    members: Mapping[str, MemberCluster], tunnels: Iterable[NodeTunnelEndpoint]
) -> dict[str, list[Overlap]]:
    """Who is refused for a pod CIDR overlap, and who is told about one, by cluster.

    `members` are the registered members by cluster name; `tunnels` their nodes' endpoints (those of
    other clusters, or claiming another cluster, are ignored).
    """
    claims: list[CidrClaim] = [
        ((cluster, ""), cidr) for cluster, member in members.items() for cidr in member.spec.pod_cidrs or []
    ]
    claims += [
        (key_of(tunnel), cidr)
        for tunnel in tunnels
        if tunnel.spec.cluster in members and tunnel.metadata.namespace == tunnel.spec.cluster
        for cidr in tunnel.spec.pod_cidrs
    ]
    by_cluster: dict[str, list[PodCIDROverlap]] = {}
    for overlap in find_overlaps(claims):
        by_cluster.setdefault(overlap.first[0], []).append(overlap)
        by_cluster.setdefault(overlap.second[0], []).append(overlap)
    accepted: set[str] = set()
    verdicts: dict[str, list[Overlap]] = {}
    for cluster in sorted(members, key=lambda name: (created_at(members[name]), name)):
        hits = [o for o in by_cluster.get(cluster, []) if _other(o, cluster) in accepted]
        if not hits:
            accepted.add(cluster)
            continue
        other = _other(hits[0], cluster)
        text = f"{hits[0]}; {cluster} registered after {other}, so {cluster} is refused"
        verdicts.setdefault(cluster, []).append(Overlap(cluster, other, True, text))
        verdicts.setdefault(other, []).append(Overlap(other, cluster, False, text))
    return verdicts


def _other(overlap: PodCIDROverlap, cluster: str) -> str:
    return overlap.second[0] if overlap.first[0] == cluster else overlap.first[0]
