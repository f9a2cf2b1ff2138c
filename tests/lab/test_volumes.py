"""A pod's volumes on the machine and its containers' mounts: tables over lab/volumes.py with a
temporary node and pod directory (no cluster: ConfigMaps, Secrets and tokens come from dicts)."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lab import volumes
from lab.podspec import NodePaths, PodContext, PodSpecError

CONTEXT = PodContext(pod_ip="10.101.1.5", host_ip="172.30.1.11")
OBJECTS: dict[tuple[str, str], dict[str, bytes]] = {
    ("configMap", "settings"): {"mode": b"fast", "level": b"3"},
    ("secret", "creds"): {"password": b"s3cret"},
}


def fetch(kind: str, name: str) -> Mapping[str, bytes] | None:
    return OBJECTS.get((kind, name))


class Tokens:
    def __init__(self) -> None:
        self.requests: list[tuple[str | None, int]] = []

    def __call__(self, audience: str | None, seconds: int) -> str:
        self.requests.append((audience, seconds))
        return f"token-{len(self.requests)}"


@pytest.fixture
def node(tmp_path: Path) -> NodePaths:
    return NodePaths(bpffs=tmp_path / "bpffs", cgroup=tmp_path / "cgroup", state=tmp_path / "state",
                     root=tmp_path / "root")


def pod(*volume_list: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "volumes": list(volume_list)}}


def test_the_default_service_account_volume_is_a_token_the_ca_and_the_namespace(node: NodePaths,
                                                                                tmp_path: Path) -> None:
    OBJECTS[("configMap", "kube-root-ca.crt")] = {"ca.crt": b"CA"}
    access = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    tokens = Tokens()
    made = volumes.prepare(pod(access), node, tmp_path / "pod", fetch, tokens, CONTEXT)
    directory = made.sources["kube-api-access-x"]
    assert {p.name: p.read_text() for p in directory.iterdir()} == {"token": "token-1", "ca.crt": "CA",
                                                                     "namespace": "ns"}
    assert stat.S_IMODE((directory / "token").stat().st_mode) == 0o644
    assert tokens.requests == [(None, 3607)] and "kube-api-access-x" in made.read_only
    # a refresh is due after 80 % of the lifetime, and keeps the token when ConfigMaps are re-read
    issued = made.tokens[0].issued_at
    assert not volumes.refresh_tokens(made, tokens, issued + 2885)
    assert volumes.refresh_tokens(made, tokens, issued + 2886)
    volumes.refresh(pod(access), made, fetch, CONTEXT)
    assert (directory / "token").read_text() == "token-2"


def test_config_map_items_modes_and_updates(node: NodePaths, tmp_path: Path) -> None:
    volume = {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "sub/mode",
                                                                          "mode": 0o600}]}}
    made = volumes.prepare(pod(volume), node, tmp_path / "pod", fetch, Tokens(), CONTEXT)
    target = made.sources["cfg"] / "sub" / "mode"
    assert target.read_text() == "fast" and stat.S_IMODE(target.stat().st_mode) == 0o600
    all_keys = {"name": "cfg", "configMap": {"name": "settings"}}
    volumes.refresh(pod(all_keys), made, fetch, CONTEXT)  # the ConfigMap's volume now holds every key
    assert sorted(str(p.relative_to(made.sources["cfg"])) for p in made.sources["cfg"].rglob("*")) == [
        "level", "mode"]


@pytest.mark.parametrize(("volume", "message"), [
    ({"name": "v", "configMap": {"name": "gone"}}, "volume v: configMap 'gone' not found"),
    ({"name": "v", "secret": {"secretName": "creds", "items": [{"key": "user", "path": "u"}]}},
     "volume v: key 'user' not in secret 'creds'"),
    ({"name": "v", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "../escape"}]}},
     "path '../escape' must be relative and stay inside"),
    ({"name": "v", "hostPath": {"path": "/sys/fs/bpf/pins", "type": "Directory"}}, "is not a Directory"),
    ({"name": "v", "hostPath": {"path": "/proc/does-not-exist"}}, "hostPath /proc/does-not-exist does not exist"),
    ({"name": "v", "hostPath": {"path": "/x", "type": "Sometimes"}}, "hostPath type 'Sometimes' is unknown"),
    ({"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"path": "b"}}]}},
     "projected source clusterTrustBundle is not supported"),
])
def test_volume_errors_name_the_volume(node: NodePaths, tmp_path: Path, volume: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(PodSpecError, match=message) as raised:
        volumes.prepare(pod(volume), node, tmp_path / "pod", fetch, Tokens(), CONTEXT)
    assert raised.value.reason == "FailedMount"


def test_optional_objects_may_be_missing(node: NodePaths, tmp_path: Path) -> None:
    volume = {"name": "v", "secret": {"secretName": "gone", "optional": True}}
    made = volumes.prepare(pod(volume), node, tmp_path / "pod", fetch, Tokens(), CONTEXT)
    assert list(made.sources["v"].iterdir()) == []


def test_host_paths_are_made_on_the_node_not_the_machine(node: NodePaths, tmp_path: Path) -> None:
    node.cgroup.mkdir()
    made = volumes.prepare(pod(
        {"name": "run", "hostPath": {"path": "/run/balancing", "type": "DirectoryOrCreate"}},
        {"name": "sock", "hostPath": {"path": "/var/run/agent.sock", "type": "FileOrCreate"}},
        {"name": "bpf", "hostPath": {"path": "/sys/fs/bpf"}},
        {"name": "cgroup", "hostPath": {"path": "/sys/fs/cgroup", "type": "Directory"}},
        {"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}},
        {"name": "scratch", "emptyDir": {}},
    ), node, tmp_path / "pod", fetch, Tokens(), CONTEXT)
    assert made.sources["run"] == node.root / "run" / "balancing" and made.sources["run"].is_dir()
    assert made.sources["sock"].is_file() and made.sources["sock"].is_relative_to(node.root)
    assert made.sources["bpf"] == node.bpffs and made.sources["tun"] == Path("/dev/net/tun")
    assert made.sources["scratch"].is_dir() and made.node_cgroup_roots == {"cgroup"}


def test_container_mounts_parents_first_with_sub_paths_read_only_and_the_unified_cgroup(node: NodePaths,
                                                                                       tmp_path: Path) -> None:
    node.cgroup.mkdir()
    made = volumes.prepare(pod(
        {"name": "cgroup", "hostPath": {"path": "/sys/fs/cgroup"}},
        {"name": "cfg", "configMap": {"name": "settings"}},
        {"name": "data", "emptyDir": {}},
    ), node, tmp_path / "pod", fetch, Tokens(), CONTEXT)
    container = {"name": "c", "volumeMounts": [
        {"name": "data", "mountPath": "/var/lib/app/cache", "subPathExpr": "$(POD)"},
        {"name": "cgroup", "mountPath": "/sys/fs/cgroup"},
        {"name": "cfg", "mountPath": "/etc/app/mode", "subPath": "mode"},
        {"name": "data", "mountPath": "/var/lib/app", "readOnly": True},
    ]}
    mounts = volumes.container_mounts(container, made, {"POD": "p"})
    assert [(m["target"], m["read_only"]) for m in mounts] == [
        ("/sys/fs/cgroup", False), ("/etc/app/mode", True), ("/var/lib/app", True),
        ("/var/lib/app/cache", False), ("/sys/fs/cgroup/unified", False)]
    assert mounts[1]["source"] == str(made.sources["cfg"] / "mode")
    assert mounts[3]["source"] == str(made.sources["data"] / "p")
    with pytest.raises(PodSpecError, match="volumeMount 'nope' names no volume"):
        volumes.container_mounts({"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, made, {})
