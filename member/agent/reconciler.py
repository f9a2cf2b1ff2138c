"""Keeps the node's socket LB equal to what the cluster says: incremental between full resyncs.

A batch of watch events names dirty sources; each is re-translated, and only the frontends whose
owner or content changed are written (`upsert`/`remove`), one atomic element each. A source that
cannot be programmed (say a Service with more endpoints than a frontend holds) keeps its previous
frontends and is reported; everything else goes on. Node-wide changes (this node's labels or zone,
the cluster's node addresses) and large batches take the full path: the whole desired state handed
to `apply()`, which writes only the difference. A periodic full resync is the safety net.

The first sync of a process is always full and only after every watch has listed, so a restarted
agent hands the datapath exactly the state it already holds: 0 map writes, no failed connect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from datapath.lb import ApplyReport, DesiredState, FrontendSpec, StateError, Tier
from member.agent.cache import EVERYTHING, NODES, ClusterCache
from member.agent.translate import (
    AgentOptions,
    FrontendKey,
    SourceOutput,
    describe_key,
    desired_state,
    merge,
    node_address_list,
    translate_all,
    translate_source,
)

FULL_SYNC_THRESHOLD = 256  # changed frontends in one batch above which one full apply is cheaper


class Datapath(Protocol):
    """The part of datapath.lb.SocketLB the agent drives."""

    def apply(self, state: DesiredState) -> ApplyReport: ...
    def upsert(self, tier: Tier, spec: FrontendSpec) -> ApplyReport: ...
    def remove(self, tier: Tier, ip: str, port: int, protocol: str) -> ApplyReport: ...


@dataclass
class SyncResult:
    full: bool = False
    upserts: int = 0
    removals: int = 0
    elements_written: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # source -> why its old frontends were kept
    lost: list[str] = field(default_factory=list)  # frontends a source lost to an older one
    seconds: float = 0.0
    report: ApplyReport | None = None  # a full sync's: what the writes were


class Reconciler:
    def __init__(self, datapath: Datapath, cache: ClusterCache, options: AgentOptions,
                 pod_cgroup: Callable[[str], int | None]) -> None:
        self.datapath = datapath
        self.cache = cache
        self.options = options
        self.pod_cgroup = pod_cgroup
        self.outputs: dict[str, SourceOutput] = {}
        self.claimants: dict[FrontendKey, set[str]] = {}
        self.programmed: dict[FrontendKey, tuple[str, FrontendSpec]] = {}
        self.addresses: tuple[str, ...] = ()
        self.problems: dict[str, str] = {}
        self.synced_once = False

    # -- bookkeeping of outputs ---------------------------------------------------------------

    def _set_output(self, source: str, output: SourceOutput) -> set[FrontendKey]:
        """Replace one source's output; return the frontend keys whose owner may have changed."""
        old = self.outputs.get(source)
        touched = set(output.frontends)
        if old is not None:
            touched |= set(old.frontends)
            for key in old.frontends:
                holders = self.claimants.get(key)
                if holders is not None:
                    holders.discard(source)
                    if not holders:
                        del self.claimants[key]
        if output.frontends or output.policies:
            self.outputs[source] = output
        else:
            self.outputs.pop(source, None)
        for key in output.frontends:
            self.claimants.setdefault(key, set()).add(source)
        return touched

    def _retranslate(self, source: str, result: SyncResult) -> set[FrontendKey]:
        output = translate_source(source, self.cache, self.options, self.pod_cgroup)
        if output.problem:
            self.problems[source] = output.problem
            result.problems[source] = output.problem
            return set()  # keep what it had
        self.problems.pop(source, None)
        return self._set_output(source, output)

    def _owner(self, key: FrontendKey) -> tuple[str, FrontendSpec] | None:
        holders = self.claimants.get(key)
        if not holders:
            return None
        source = min(holders, key=lambda s: (self.outputs[s].age, s))
        return source, self.outputs[source].frontends[key]

    # -- syncing ------------------------------------------------------------------------------

    def full_sync(self) -> SyncResult:
        started = time.perf_counter()
        result = SyncResult(full=True)
        fresh = translate_all(self.cache, self.options, self.pod_cgroup)
        for source, output in fresh.items():
            if output.problem:
                self.problems[source] = output.problem
                result.problems[source] = output.problem
                fresh[source] = self.outputs.get(source, SourceOutput(age=output.age))
            else:
                self.problems.pop(source, None)
        self.outputs, self.claimants = {}, {}
        for source, output in fresh.items():
            self._set_output(source, output)
        owners, result.lost = merge((s, o) for s, o in sorted(self.outputs.items()))
        self.addresses = tuple(node_address_list(self.cache))
        state = desired_state(((key, spec) for key, (_source, spec) in owners.items()), self.addresses)
        report = self.datapath.apply(state)
        self.programmed = owners
        self.synced_once = True
        result.elements_written = report.elements_written
        result.report = report
        result.seconds = time.perf_counter() - started
        return result

    def sync(self, dirty: Iterable[str]) -> SyncResult:
        """Bring the datapath up to date after events that made `dirty` sources stale."""
        dirty = set(dirty)
        if not self.synced_once or EVERYTHING in dirty:
            return self.full_sync()
        if NODES in dirty and tuple(node_address_list(self.cache)) != self.addresses:
            return self.full_sync()
        started = time.perf_counter()
        result = SyncResult()
        touched: set[FrontendKey] = set()
        for source in sorted(dirty - {NODES}):
            touched |= self._retranslate(source, result)
        changes: list[tuple[FrontendKey, tuple[str, FrontendSpec] | None]] = []
        for key in touched:
            owner = self._owner(key)
            current = self.programmed.get(key)
            if owner is None:
                if current is not None:
                    changes.append((key, None))
            elif current is None or current[1] != owner[1]:
                changes.append((key, owner))
            elif current[0] != owner[0]:
                self.programmed[key] = owner  # same content under a new owner: nothing to write
        if len(changes) > FULL_SYNC_THRESHOLD:
            full = self.full_sync()
            full.problems.update(result.problems)
            return full
        for key, owner in sorted(changes, key=lambda change: change[0]):
            tier, ip, port, protocol = key
            try:
                if owner is None:
                    report = self.datapath.remove(tier, ip, port, protocol)
                    self.programmed.pop(key, None)
                    result.removals += 1
                else:
                    report = self.datapath.upsert(tier, owner[1])
                    self.programmed[key] = owner
                    result.upserts += 1
            except StateError as error:  # refused as a whole: the frontend keeps its old entry
                source = owner[0] if owner else self.programmed[key][0]
                message = f"{describe_key(key)}: {error}"
                self.problems[source] = result.problems[source] = message
                continue
            result.elements_written += report.elements_written
        result.seconds = time.perf_counter() - started
        return result
