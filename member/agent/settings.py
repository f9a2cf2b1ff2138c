"""The node agent's settings: read once from the environment (the DaemonSet sets them), then passed.

| variable | meaning | default |
| --- | --- | --- |
| NODE_NAME | this node (the chart sets it from spec.nodeName) | required |
| BALANCING_BPFFS | pin directory of this node's socket LB | /sys/fs/bpf/balancing |
| BALANCING_CGROUP_ROOT | the cgroup the programs attach to: the node's cgroup2 root | /sys/fs/cgroup |
| BALANCING_ALLOW_CGROUP_ROOT | attach even if that is a cgroup2 mount root (a real node's) | true |
| REDIRECT_QOS_LIMIT | LocalRedirectPolicy redirects per frontend per second per node (0: none) | 0 |
| BALANCING_BATCH_WINDOW | seconds to gather events before a sync | 0.02 |
| BALANCING_RESYNC_PERIOD | seconds between full resyncs | 300 |
| BALANCING_STATUS_PERIOD | at most one BalancingNode status write per this many seconds | 2 |
| BALANCING_METRICS_ADDRESS | host:port of /metrics, /healthz, /readyz (empty: off) | 0.0.0.0:9964 |
| BALANCING_NAMESPACE | the member's namespace (where the controller writes policy slices) | balancing-system |
| CLUSTER_NAME | this cluster's name in the clusterset (its own endpoints of an import) | empty |
| BALANCING_STATE_DIR | the node's private state directory (the WireGuard key) | /var/lib/balancing |
| KUBECONFIG | a kubeconfig instead of the in-cluster credentials | unset |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BPFFS = Path("/sys/fs/bpf/balancing")
DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_BATCH_WINDOW = 0.02
DEFAULT_RESYNC_PERIOD = 300.0
DEFAULT_STATUS_PERIOD = 2.0
DEFAULT_METRICS_ADDRESS = "0.0.0.0:9964"
DEFAULT_STATE_DIR = Path("/var/lib/balancing")


class SettingsError(ValueError):
    user_facing = True


@dataclass(frozen=True)
class AgentSettings:
    node_name: str
    bpffs: Path = DEFAULT_BPFFS
    cgroup_root: Path = DEFAULT_CGROUP_ROOT
    allow_cgroup_root: bool = True
    redirect_qos_limit: int = 0
    batch_window: float = DEFAULT_BATCH_WINDOW
    resync_period: float = DEFAULT_RESYNC_PERIOD
    status_period: float = DEFAULT_STATUS_PERIOD
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    namespace: str = "balancing-system"
    cluster: str = ""
    state_dir: Path = DEFAULT_STATE_DIR
    kubeconfig: str | None = None


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SettingsError(f"{name}={raw!r}: must be {kind}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: must not be negative")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r}: must be true or false")


def from_environment(env: Mapping[str, str] = os.environ) -> AgentSettings:
    node = env.get("NODE_NAME", "").strip()
    if not node:
        raise SettingsError("NODE_NAME is not set: the agent must know which node it programs")
    return AgentSettings(
        node_name=node,
        bpffs=Path(env.get("BALANCING_BPFFS") or DEFAULT_BPFFS),
        cgroup_root=Path(env.get("BALANCING_CGROUP_ROOT") or DEFAULT_CGROUP_ROOT),
        allow_cgroup_root=_flag(env, "BALANCING_ALLOW_CGROUP_ROOT", True),
        redirect_qos_limit=int(_number(env, "REDIRECT_QOS_LIMIT", 0, integer=True)),
        batch_window=_number(env, "BALANCING_BATCH_WINDOW", DEFAULT_BATCH_WINDOW),
        resync_period=_number(env, "BALANCING_RESYNC_PERIOD", DEFAULT_RESYNC_PERIOD),
        status_period=_number(env, "BALANCING_STATUS_PERIOD", DEFAULT_STATUS_PERIOD),
        metrics_address=env.get("BALANCING_METRICS_ADDRESS", DEFAULT_METRICS_ADDRESS),
        namespace=env.get("BALANCING_NAMESPACE") or "balancing-system",
        cluster=env.get("CLUSTER_NAME", "").strip(),
        state_dir=Path(env.get("BALANCING_STATE_DIR") or DEFAULT_STATE_DIR),
        kubeconfig=env.get("KUBECONFIG") or None,
    )
