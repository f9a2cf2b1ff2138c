"""A lab pod's volumes: made on the machine under the pod's directory (or the node's, for hostPath)
and bind-mounted into its containers' private mount namespaces.

hostPath refers to the node (podspec.node_host_path); emptyDir is a directory of the pod;
configMap, secret, downwardAPI and projected volumes are files written from the API, refreshed
while the pod runs; a projected serviceAccountToken is a TokenRequest token bound to the pod and
refreshed before it expires (podspec.token_refresh_due). The default ServiceAccount volume the
apiserver injects (`kube-api-access-*`) is just such a projected volume.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import podspec
from lab.podspec import NodePaths, PodContext, PodSpecError

# (kind "configMap" | "secret", name in the pod's namespace) -> its data, or None when missing
Fetch = Callable[[str, str], Mapping[str, bytes] | None]
# (audience or None, expirationSeconds) -> a token bound to the pod
RequestToken = Callable[[str | None, int], str]

DEFAULT_MODE = 0o644
HOST_PATH_CHECKS: Mapping[str, Callable[[os.stat_result], bool]] = {
    "Directory": lambda st: stat.S_ISDIR(st.st_mode),
    "File": lambda st: stat.S_ISREG(st.st_mode),
    "Socket": lambda st: stat.S_ISSOCK(st.st_mode),
    "CharDevice": lambda st: stat.S_ISCHR(st.st_mode),
    "BlockDevice": lambda st: stat.S_ISBLK(st.st_mode),
}


@dataclass
class TokenFile:
    path: Path
    audience: str | None
    expiration_seconds: int
    mode: int
    issued_at: float = 0.0  # time.time() of the token in the file


@dataclass
class PodVolumes:
    sources: dict[str, Path] = field(default_factory=dict)  # volume name -> what containers mount
    read_only: set[str] = field(default_factory=set)  # volumes always mounted read-only (API data)
    node_cgroup_roots: set[str] = field(default_factory=set)  # hostPath /sys/fs/cgroup: also at .../unified
    tokens: list[TokenFile] = field(default_factory=list)


def _relative(path: str, volume: str) -> str:
    normal = posixpath.normpath(path)
    if path.startswith("/") or normal == ".." or normal.startswith("../"):
        raise PodSpecError("FailedMount", f"volume {volume}: path {path!r} must be relative and stay inside")
    return normal


def _write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Make `directory` hold exactly `files` (relative path -> content, mode); each file replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for relative, (content, mode) in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if target.read_bytes() == content and stat.S_IMODE(target.stat().st_mode) == mode:
                continue
        except OSError:
            pass
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(content)
        temporary.chmod(mode)
        temporary.replace(target)
    for existing in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = str(existing.relative_to(directory))
        if existing.is_file() and relative not in files:
            existing.unlink()
        elif existing.is_dir() and not any(existing.iterdir()):
            existing.rmdir()


def _object_files(kind: str, source: Mapping[str, Any], fetch: Fetch, default_mode: int,
                  volume: str) -> dict[str, tuple[bytes, int]]:
    name = str(source.get("name") or source.get("secretName") or "")
    data = fetch(kind, name)
    if data is None:
        if source.get("optional"):
            return {}
        raise PodSpecError("FailedMount", f"volume {volume}: {kind} {name!r} not found")
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise PodSpecError("FailedMount", f"volume {volume}: key {item['key']!r} not in {kind} {name!r}")
        files[_relative(item["path"], volume)] = (data[item["key"]], int(item.get("mode") or default_mode))
    return files


def _downward_files(pod: Mapping[str, Any], items: list[dict[str, Any]], context: PodContext, default_mode: int,
                    volume: str) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if "fieldRef" in item:
            value = podspec.field_value(pod, item["fieldRef"]["fieldPath"], context)
        else:
            ref = item["resourceFieldRef"]
            container = next((c for c in podspec.containers(pod) if c["name"] == ref.get("containerName")), None)
            if container is None:
                raise PodSpecError("FailedMount", f"volume {volume}: no container {ref.get('containerName')!r}")
            value = podspec.resource_field(container, ref, context.allocatable)
        files[_relative(item["path"], volume)] = (value.encode(), int(item.get("mode") or default_mode))
    return files


def _data_files(pod: Mapping[str, Any], volume: Mapping[str, Any], fetch: Fetch,
                context: PodContext) -> tuple[dict[str, tuple[bytes, int]], list[TokenFile]]:
    """The files of a configMap, secret, downwardAPI or projected volume, and its token files (unwritten)."""
    name = volume["name"]
    for kind in ("configMap", "secret"):
        if kind in volume:
            source = volume[kind]
            return _object_files(kind, source, fetch, int(source.get("defaultMode") or DEFAULT_MODE), name), []
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        mode = int(source.get("defaultMode") or DEFAULT_MODE)
        return _downward_files(pod, source.get("items") or [], context, mode, name), []
    projected = volume["projected"]
    default_mode = int(projected.get("defaultMode") or DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    tokens: list[TokenFile] = []
    for source in projected.get("sources") or []:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            tokens.append(TokenFile(
                path=Path(_relative(token["path"], name)), audience=token.get("audience"),
                expiration_seconds=int(token.get("expirationSeconds") or podspec.DEFAULT_TOKEN_EXPIRATION_SECONDS),
                mode=default_mode,
            ))
        elif "configMap" in source or "secret" in source:
            kind = "configMap" if "configMap" in source else "secret"
            files.update(_object_files(kind, source[kind], fetch, default_mode, name))
        elif "downwardAPI" in source:
            files.update(_downward_files(pod, source["downwardAPI"].get("items") or [], context, default_mode, name))
        else:
            raise PodSpecError("FailedMount", f"volume {name}: projected source {', '.join(source)} is not supported")
    return files, tokens


def _host_path(volume: Mapping[str, Any], node: NodePaths) -> Path:
    source = volume["hostPath"]
    path = node_path = podspec.node_host_path(str(source["path"]), node)
    kind = source.get("type") or ""
    machine = not any(path.is_relative_to(base) for base in (node.bpffs, node.cgroup, node.state, node.root))
    if kind in ("", "DirectoryOrCreate") and not path.exists():
        if machine:
            raise PodSpecError("FailedMount", f"volume {volume['name']}: hostPath {source['path']} does not exist")
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        if machine:
            raise PodSpecError("FailedMount", f"volume {volume['name']}: hostPath {source['path']} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)
    elif kind in HOST_PATH_CHECKS:
        try:
            ok = HOST_PATH_CHECKS[kind](path.stat())
        except OSError:
            ok = False
        if not ok:
            raise PodSpecError("FailedMount", f"volume {volume['name']}: hostPath {source['path']} is not a {kind}")
    elif kind not in ("", "DirectoryOrCreate", "FileOrCreate"):
        raise PodSpecError("FailedMount", f"volume {volume['name']}: hostPath type {kind!r} is unknown")
    return node_path


def prepare(pod: Mapping[str, Any], node: NodePaths, directory: Path, fetch: Fetch, request_token: RequestToken,
            context: PodContext) -> PodVolumes:
    """Make every volume of the pod; raises PodSpecError (reason FailedMount) naming the volume."""
    volumes = PodVolumes()
    for base in (node.bpffs, node.state, node.root):  # a node always has these, whoever removed them
        base.mkdir(parents=True, exist_ok=True)
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            volumes.sources[name] = _host_path(volume, node)
            if podspec.node_host_path(volume["hostPath"]["path"], node) == node.cgroup:
                volumes.node_cgroup_roots.add(name)
        elif "emptyDir" in volume:
            volumes.sources[name] = directory / "volumes" / "empty-dir" / name
            volumes.sources[name].mkdir(parents=True, exist_ok=True)
        else:
            target = directory / "volumes" / "data" / name
            files, tokens = _data_files(pod, volume, fetch, context)
            _write_files(target, files)
            for token in tokens:
                token.path = target / token.path
            volumes.tokens.extend(tokens)
            volumes.sources[name] = target
            volumes.read_only.add(name)
    refresh_tokens(volumes, request_token, time.time(), force=True)
    return volumes


def refresh(pod: Mapping[str, Any], volumes: PodVolumes, fetch: Fetch, context: PodContext) -> None:
    """Rewrite the API-backed volumes from the current ConfigMaps and Secrets (the kubelet's periodic sync)."""
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if name in volumes.read_only:
            files, _tokens = _data_files(pod, volume, fetch, context)
            keep = {str(t.path.relative_to(volumes.sources[name])) for t in volumes.tokens
                    if t.path.is_relative_to(volumes.sources[name])}
            for relative in keep:
                token_file = volumes.sources[name] / relative
                files[relative] = (token_file.read_bytes(), stat.S_IMODE(token_file.stat().st_mode))
            _write_files(volumes.sources[name], files)


def refresh_tokens(volumes: PodVolumes, request_token: RequestToken, now: float, *, force: bool = False) -> bool:
    """Request a new token for each token file that is due; True when any was rewritten."""
    changed = False
    for token in volumes.tokens:
        if force or podspec.token_refresh_due(token.issued_at, token.expiration_seconds, now):
            _write_files_one(token.path, request_token(token.audience, token.expiration_seconds).encode(), token.mode)
            token.issued_at = now
            changed = True
    return changed


def next_token_refresh(volumes: PodVolumes) -> float | None:
    """The time.time() at which the next token is due, or None without tokens."""
    due = [token.issued_at + min(podspec.TOKEN_REFRESH_FRACTION * token.expiration_seconds,
                                 podspec.TOKEN_REFRESH_MAX_AGE) for token in volumes.tokens]
    return min(due) if due else None


def _write_files_one(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    temporary.chmod(mode)
    temporary.replace(path)


def container_mounts(container: Mapping[str, Any], volumes: PodVolumes, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The bind mounts of one container, parents before children."""
    mounts: list[dict[str, Any]] = []
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in volumes.sources:
            raise PodSpecError("CreateContainerConfigError",
                               f"container {container['name']}: volumeMount {name!r} names no volume of the pod")
        source = volumes.sources[name]
        sub_path = mount.get("subPath") or podspec.expand(mount.get("subPathExpr") or "", env)
        if sub_path:
            source = source / _relative(sub_path, name)
            if not source.exists():
                source.mkdir(parents=True)  # the kubelet makes a missing subPath a directory
        read_only = bool(mount.get("readOnly")) or name in volumes.read_only
        target = posixpath.normpath(str(mount["mountPath"]))
        mounts.append({"kind": "bind", "source": str(source), "target": target, "read_only": read_only})
        if name in volumes.node_cgroup_roots and not sub_path:
            mounts.append({"kind": "bind", "source": str(source), "target": f"{target}/unified",
                           "read_only": read_only})
    mounts.sort(key=lambda m: len(Path(m["target"]).parts))
    return mounts
