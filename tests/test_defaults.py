"""Every default we promise, pinned in one place: a change here is a change users will notice.

(In the spirit of kopf's tests/settings/test_defaults.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from crds import MemberCluster
from datapath import DEFAULT_NODE_INDEX_DIR, tunnel
from datapath.lb import LAYOUT_VERSION, MAX_AFFINITY_TIMEOUT_S, MAX_BACKENDS_PER_FRONTEND, NODE_PORT_ANY, Capacity, Tier
from hub import joining, mesh
from hub.settings import HubSettings
from lab import addressing, kubeapi, kubelet, podspec
from member.agent import events, reconciler, services
from member.agent import settings as agent_settings
from member.controller import run as controller
from member.kube import LIST_PAGE_SIZE, WATCH_TIMEOUT_SECONDS

REPO = Path(__file__).resolve().parent.parent


def _c_define(name: str) -> str:
    text = (REPO / "bpf" / "lib" / "common.h").read_text()
    found = re.search(rf"#define {name} (.+?)(?:\s*/\*.*)?$", text, re.MULTILINE)
    assert found, name
    return found.group(1).strip()


def test_socket_lb_capacities_and_limits() -> None:
    capacity = Capacity()
    assert (capacity.frontends, capacity.slots, capacity.policies) == (65536, 262144, 131072)
    assert (capacity.nodes, capacity.skips) == (16384, 65536)
    assert capacity.backends == 131072  # half the slots: room for an atomic swap of every set
    assert capacity.policy_names == 65536  # half the names: new names fit beside the old ones
    assert capacity.skip_entries == 32768
    assert _c_define("BF_LB4_FRONTENDS_MAX") == str(capacity.frontends)
    assert _c_define("BF_LB4_SLOTS_MAX") == str(capacity.slots)
    assert _c_define("BF_LB4_POLICIES_MAX") == str(capacity.policies)
    assert _c_define("BF_LB4_NODES_MAX") == str(capacity.nodes)
    assert _c_define("BF_LB4_SKIPS_MAX") == str(capacity.skips)
    assert _c_define("BF_LB4_AFFINITY_MAX") == "131072"
    assert _c_define("BF_LB4_EVENTS_BYTES") == "(4 * 1024 * 1024)"
    assert MAX_BACKENDS_PER_FRONTEND == 16384
    assert MAX_AFFINITY_TIMEOUT_S == 86400  # Kubernetes' own limit for ClientIP affinity
    assert LAYOUT_VERSION == 2
    assert NODE_PORT_ANY == "0.0.0.0"
    assert [int(tier) for tier in (Tier.LOCAL_REDIRECT, Tier.BALANCING, Tier.SERVICE)] == [0, 1, 2]


def test_datapath_paths() -> None:
    assert str(DEFAULT_NODE_INDEX_DIR) == "/run/balancing/nodes"  # the product's, not the lab's
    assert not str(DEFAULT_NODE_INDEX_DIR).startswith("/run/balancing-lab")


def test_tunnel_defaults() -> None:
    assert tunnel.DEFAULT_INTERFACE == "bfwg0"
    assert tunnel.DEFAULT_LISTEN_PORT == 51820
    assert tunnel.DEFAULT_KEEPALIVE == 25
    assert mesh.DEFAULT_KEEPALIVE_SECONDS == tunnel.DEFAULT_KEEPALIVE


def test_hub_defaults() -> None:
    settings = HubSettings.from_environment({})
    assert settings.catalogue_namespace == "balancing-federation"
    assert str(settings.clusterset_ip_pool) == "10.255.0.0/16"
    assert str(settings.proxy_ip_pool) == str(addressing.NODE_PROXY_POOL) == "100.96.0.0/16"
    assert settings.batch_window == 0.1  # changes gathered before one reconcile
    assert settings.resync_period == 300.0  # full reconcile, a safety net
    assert settings.metrics_address == "0.0.0.0:9966"
    assert settings.watch_namespaces == ()  # the whole cluster
    assert settings.keepalive_seconds == 25
    assert joining.DEFAULT_TOKEN_SECONDS == 365 * 24 * 3600  # a member's token lives a year
    assert joining.MEMBER_SERVICE_ACCOUNT == "member"
    member = MemberCluster.model_validate({"metadata": {"name": "m"}})
    assert (member.spec.heartbeat_period_seconds, member.spec.heartbeat_timeout_seconds) == (10, 40)
    values = yaml.safe_load((REPO / "charts" / "hub" / "values.yaml").read_text())
    assert values["catalogueNamespace"] == settings.catalogue_namespace
    assert values["clusterSetIpPool"] == str(settings.clusterset_ip_pool)
    assert values["proxyIpPool"] == str(settings.proxy_ip_pool)
    assert values["operator"]["metricsPort"] == 9966
    assert values["operator"]["batchWindowSeconds"] == settings.batch_window
    assert values["operator"]["resyncPeriodSeconds"] == settings.resync_period


def test_lab_defaults() -> None:
    assert kubelet.HEARTBEAT_INTERVAL == 10.0
    assert kubelet.NODE_STATUS_INTERVAL == 30.0
    assert kubeapi.LEASE_DURATION_SECONDS == 40  # kube-controller-manager's default grace is 40 s
    assert kubelet.HEARTBEAT_INTERVAL < kubeapi.LEASE_DURATION_SECONDS / 2
    assert str(addressing.NODE_PROXY_POOL) == "100.96.0.0/16"
    assert str(addressing.UNDERLAY_NETWORK) == "172.30.0.0/16"
    assert addressing.ClusterAddressing("hub").apiserver_port == 6443
    assert addressing.ClusterAddressing("member-2").apiserver_port == 6445
    assert addressing.ClusterAddressing("member-2").scheduler_port == 10402


def test_lab_kubelet_defaults_follow_the_kubelet() -> None:
    assert (podspec.RESTART_BACKOFF_INITIAL, podspec.RESTART_BACKOFF_MAX, podspec.RESTART_BACKOFF_RESET) == (
        10.0, 300.0, 600.0)
    assert podspec.DEFAULT_TERMINATION_GRACE_SECONDS == 30
    assert podspec.DEFAULT_TOKEN_EXPIRATION_SECONDS == 3607
    assert (podspec.TOKEN_REFRESH_FRACTION, podspec.TOKEN_REFRESH_MAX_AGE) == (0.8, 86400.0)
    assert kubeapi.MAX_PODS_PER_NODE == 110
    assert kubelet.VOLUME_REFRESH_INTERVAL == 60.0
    assert podspec.project_image_repository() == "ghcr.io/balancing-federation/balancing"
    assert podspec.IMAGE_ENTRYPOINT == ("balancing",)


def test_member_defaults() -> None:
    defaults = agent_settings.from_environment({"NODE_NAME": "n1"})
    assert (defaults.batch_window, defaults.resync_period, defaults.status_period) == (0.02, 300.0, 2.0)
    assert defaults.bpffs == Path("/sys/fs/bpf/balancing")
    assert defaults.cgroup_root == Path("/sys/fs/cgroup") and defaults.allow_cgroup_root
    assert (defaults.redirect_qos_limit, defaults.metrics_address) == (0, "0.0.0.0:9964")
    assert defaults.namespace == "balancing-system"
    assert reconciler.FULL_SYNC_THRESHOLD == 256
    assert events.RESOLUTION_LOG_RATE == 100  # resolution log lines a second per node; all are counted
    assert services.DEFAULT_AFFINITY_TIMEOUT_S == 10800  # Kubernetes' sessionAffinityConfig default
    assert (controller.DEFAULT_BATCH_WINDOW, controller.DEFAULT_RESYNC_PERIOD) == (0.05, 60.0)
    assert controller.ControllerSettings().metrics_address == "0.0.0.0:9965"
    assert (LIST_PAGE_SIZE, WATCH_TIMEOUT_SECONDS) == (500, 290)
