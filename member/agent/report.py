"""What the agent reports about its node (the BalancingNode status): pure, from the reconciler's view."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from crds.nodes import MAX_NODE_PROBLEMS
from datapath.lb import FrontendSpec, Tier
from member.agent.cache import POLICIES, ClusterCache
from member.agent.translate import FrontendKey, SourceOutput

AGENT_VERSION = "0.1.0"
MAX_MESSAGE = 1000


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_status(
    cache: ClusterCache,
    outputs: Mapping[str, SourceOutput],
    programmed: Mapping[FrontendKey, tuple[str, FrontendSpec]],
    problems: Mapping[str, str],
) -> dict[str, Any]:
    """The BalancingNode status: totals, every policy's state on this node, and a Ready condition."""
    policies: list[dict[str, Any]] = []
    policy_output = outputs.get(POLICIES, SourceOutput())
    programmed_by_policy: dict[str, tuple[int, set[tuple[str, int]]]] = {}
    for key, (source, spec) in programmed.items():
        if source == POLICIES and key[0] in (Tier.LOCAL_REDIRECT, Tier.BALANCING):
            count, backends = programmed_by_policy.get(spec.policy, (0, set()))
            programmed_by_policy[spec.policy] = (count + 1, backends | {(b.ip, b.port) for b in spec.backends})
    for ref, result in sorted(policy_output.policies.items()):
        kind, _, name = ref.partition("/")
        policy = cache.policies.get(ref)
        frontends, backends = programmed_by_policy.get(ref, (0, set()))
        entry: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "generation": policy.metadata.generation if policy is not None else None,
            "state": result.skipped or "Programmed",
            "frontends": frontends,
            "backends": len(backends),
        }
        if result.problems:
            entry["message"] = "; ".join(result.problems)[:MAX_MESSAGE]
        policies.append({k: v for k, v in entry.items() if v is not None})
    for ref, why in sorted(cache.invalid_policies.items()):
        kind, _, name = ref.partition("/")
        policies.append({"kind": kind, "name": name, "state": "Invalid", "message": why[:MAX_MESSAGE]})
    backend_slots = sum(len(spec.backends) for _source, spec in programmed.values())
    now = _now()
    condition = {
        "type": "Ready",
        "status": "False" if problems else "True",
        "reason": "SyncProblems" if problems else "Synced",
        "message": ("; ".join(f"{source}: {why}" for source, why in sorted(problems.items())) or
                    f"{len(programmed)} frontends programmed")[:MAX_MESSAGE],
        "lastTransitionTime": now,
    }
    status: dict[str, Any] = {
        "lastSyncTime": now,
        "agentVersion": AGENT_VERSION,
        "frontends": len(programmed),
        "backends": backend_slots,
        "policies": policies,
        "problems": [{"source": source, "message": why[:MAX_MESSAGE]}
                     for source, why in sorted(problems.items())][:MAX_NODE_PROBLEMS],
        "conditions": [condition],
    }
    return status
