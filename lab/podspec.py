"""What the lab's kubelet makes of a Pod: pure functions over the Pod object (a dict, as the API
serves it), tested with tables and no cluster.

- which images the lab can run (only the project image, with the locally installed package);
- the container's environment, command line, and hostPath mapping ("a node's host is the node");
- QoS class and cgroup placement, restart back-off, probe settings, pod phase and conditions.
"""

from __future__ import annotations

import functools
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from datapath.cgroups import cgroupfs_pod_path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The one place the lab learns the project image: the member chart's default `image.repository`.
PROJECT_IMAGE_VALUES = REPO_ROOT / "charts" / "member" / "values.yaml"

# The project image's configuration, as the Containerfile sets it (tests/lab/test_image.py compares).
IMAGE_ENTRYPOINT: tuple[str, ...] = ("balancing",)
IMAGE_WORKDIR = "/"
IMAGE_ENV: Mapping[str, str] = {"PYTHONUNBUFFERED": "1"}

RESTART_BACKOFF_INITIAL = 10.0  # seconds; the kubelet's: 10 s doubling up to 300 s
RESTART_BACKOFF_MAX = 300.0
RESTART_BACKOFF_RESET = 600.0  # a container that ran this long restarts without back-off
DEFAULT_TERMINATION_GRACE_SECONDS = 30
TOKEN_REFRESH_FRACTION = 0.8  # the kubelet refreshes a projected token after 80 % of its lifetime
TOKEN_REFRESH_MAX_AGE = 24 * 3600.0
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3607
SUPPORTED_VOLUME_TYPES = ("hostPath", "emptyDir", "configMap", "secret", "projected", "downwardAPI")

# hostPath prefixes that are the node's own, not the machine's (longest first).
NODE_BPFFS = "/sys/fs/bpf"
NODE_CGROUP = "/sys/fs/cgroup"
NODE_STATE = "/var/lib/balancing"
# Paths of the shared kernel: every node sees the machine's.
MACHINE_PATHS = ("/proc", "/dev", "/sys", "/lib/modules")


class PodSpecError(ValueError):
    """A pod the lab cannot run as specified; `reason` is the kubelet's reason string."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


@functools.cache
def project_image_repository() -> str:
    values = yaml.safe_load(PROJECT_IMAGE_VALUES.read_text())
    return str(values["image"]["repository"])


@functools.cache
def project_image() -> str:
    """The project image as the chart references it by default: repository and the chart's appVersion."""
    chart = yaml.safe_load((PROJECT_IMAGE_VALUES.parent / "Chart.yaml").read_text())
    return f"{project_image_repository()}:{chart['appVersion']}"


def image_repository(reference: str) -> str:
    """An image reference without its digest and tag: `ghcr.io/x/y:1@sha256:...` -> `ghcr.io/x/y`."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def unrunnable_image_message(reference: str) -> str | None:
    """Why the lab cannot run `reference`, or None when it is the project image."""
    if image_repository(reference) == project_image_repository():
        return None
    return (f"the lab runs only the project image {project_image_repository()} (image.repository in "
            f"{PROJECT_IMAGE_VALUES.relative_to(REPO_ROOT)}), from the locally installed package: it pulls "
            f"no images, so it cannot run {reference!r}")


def containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(pod["spec"].get("containers") or [])


def init_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(pod["spec"].get("initContainers") or [])


def unsupported(pod: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) for each thing in the pod that the lab cannot run."""
    problems: list[tuple[str, str]] = []
    for container in [*init_containers(pod), *containers(pod)]:
        message = unrunnable_image_message(str(container.get("image", "")))
        if message:
            problems.append(("ErrImageNeverPull", f"container {container['name']}: {message}"))
    for volume in pod["spec"].get("volumes") or []:
        kinds = [key for key in volume if key != "name"]
        if not any(kind in SUPPORTED_VOLUME_TYPES for kind in kinds):
            problems.append(("FailedMount", f"volume {volume['name']}: type {', '.join(kinds) or 'none'} is not "
                                            f"supported by the lab (supported: {', '.join(SUPPORTED_VOLUME_TYPES)})"))
    if pod["spec"].get("ephemeralContainers"):
        problems.append(("Failed", "ephemeral containers are not supported by the lab"))
    return problems


# ---------------------------------------------------------------------------------------------
# QoS and cgroups
# ---------------------------------------------------------------------------------------------


def qos_class(pod: Mapping[str, Any]) -> str:
    """The pod's QoS class in lower case (the apiserver sets status.qosClass; computed when absent)."""
    given = (pod.get("status") or {}).get("qosClass")
    if given:
        return str(given).lower()
    every = [*init_containers(pod), *containers(pod)]
    resources = [c.get("resources") or {} for c in every]
    if not any((r.get("requests") or {}) or (r.get("limits") or {}) for r in resources):
        return "besteffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "burstable"
    return "guaranteed"


def pod_cgroup(node_cgroup: Path, pod: Mapping[str, Any]) -> Path:
    """`<node cgroup>/kubepods/[burstable|besteffort/]pod<UID>`, as the kubelet's cgroupfs driver does."""
    return node_cgroup / cgroupfs_pod_path(str(pod["metadata"]["uid"]), qos_class(pod))


# ---------------------------------------------------------------------------------------------
# Quantities, fields, environment and command line
# ---------------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX: Mapping[str, Decimal] = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
    "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def quantity(text: str | int | float) -> Decimal:
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise PodSpecError("CreateContainerConfigError", f"invalid quantity {text!r}")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef's value: limits fall back to the node's allocatable, as in the kubelet."""
    resource = str(ref["resource"])
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    if value is None:
        value = allocatable.get(name, "0")
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity(value) / divisor))


@dataclass(frozen=True)
class PodContext:
    """What the kubelet knows about a pod beyond its object when it starts a container."""

    pod_ip: str
    host_ip: str
    allocatable: Mapping[str, str] = field(default_factory=dict)


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Mapping[str, Any], path: str, context: PodContext) -> str:
    """A fieldRef's value (the fields a downward-API env var or file may name)."""
    metadata, spec = pod["metadata"], pod["spec"]
    simple: dict[str, Any] = {
        "metadata.name": metadata.get("name"), "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": context.host_ip, "status.hostIPs": context.host_ip,
        "status.podIP": context.pod_ip, "status.podIPs": context.pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    labelled = _LABEL_PATH.match(path)
    if labelled:
        return str((metadata.get(labelled.group(1)) or {}).get(labelled.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        entries = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(entries.items()))
    raise PodSpecError("CreateContainerConfigError", f"fieldRef {path!r} is not supported")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`, the rest stays."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$" or index + 1 == len(text):
            out.append(char)
            index += 1
            continue
        following = text[index + 1]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "(":
            end = text.find(")", index + 2)
            if end < 0:
                out.append(text[index:])
                break
            name = text[index + 2 : end]
            out.append(variables[name] if name in variables else text[index : end + 1])
            index = end + 1
        else:
            out.append(char)
            index += 1
    return "".join(out)


# (kind "configMap" or "secret", namespace-local name) -> its data as text, or None when missing
ObjectLookup = Callable[[str, str], Mapping[str, str] | None]


def _key_ref(kind: str, ref: Mapping[str, Any], lookup: ObjectLookup, what: str) -> str | None:
    data = lookup(kind, str(ref.get("name", "")))
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        missing = f"{kind} {ref.get('name')!r}" if data is None else f"key {ref['key']!r} in {kind} {ref.get('name')!r}"
        raise PodSpecError("CreateContainerConfigError", f"{what}: {missing} not found")
    return data[ref["key"]]


def container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], context: PodContext, lookup: ObjectLookup,
    service_env: Mapping[str, str],
) -> dict[str, str]:
    """The container's environment, in the kubelet's order: service variables, envFrom, env."""
    env = dict(service_env)
    for source in container.get("envFrom") or []:
        kind = "configMap" if "configMapRef" in source else "secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        data = lookup(kind, str(ref.get("name", "")))
        if data is None:
            if ref.get("optional"):
                continue
            raise PodSpecError("CreateContainerConfigError", f"envFrom: {kind} {ref.get('name')!r} not found")
        prefix = source.get("prefix") or ""
        env.update({prefix + key: value for key, value in data.items()})
    for variable in container.get("env") or []:
        name = variable["name"]
        source = variable.get("valueFrom")
        if source is None:
            env[name] = expand(str(variable.get("value") or ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], context)
        elif "resourceFieldRef" in source:
            env[name] = resource_field(container, source["resourceFieldRef"], context.allocatable)
        else:
            kind = "configMap" if "configMapKeyRef" in source else "secret"
            value = _key_ref(kind, source.get("configMapKeyRef") or source.get("secretKeyRef") or {}, lookup,
                             f"env {name}")
            if value is not None:
                env[name] = value
    return env


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded; the image's entrypoint when there is no command."""
    command = container.get("command")
    args = container.get("args") or []
    argv = [*(command if command else IMAGE_ENTRYPOINT), *args]
    return [expand(str(part), env) for part in argv]


# ---------------------------------------------------------------------------------------------
# "A node's host is the node": where a hostPath points
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePaths:
    bpffs: Path  # the node's bpffs directory
    cgroup: Path  # the node's cgroup subtree
    state: Path  # the node's private state directory (/var/lib/balancing)
    root: Path  # the node's own disk: every other path, except the shared kernel's


def _under(path: str, prefix: str) -> str | None:
    if path == prefix:
        return ""
    return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None


def node_host_path(path: str, node: NodePaths) -> Path:
    """The machine path a hostPath of a pod on `node` refers to."""
    if not path.startswith("/"):
        raise PodSpecError("FailedMount", f"hostPath {path!r} is not absolute")
    normal = posixpath.normpath(path)
    for prefix, base in ((NODE_BPFFS, node.bpffs), (f"{NODE_CGROUP}/unified", node.cgroup),
                         (NODE_CGROUP, node.cgroup), (NODE_STATE, node.state)):
        rest = _under(normal, prefix)
        if rest is not None:
            return base / rest if rest else base
    if any(_under(normal, prefix) is not None for prefix in MACHINE_PATHS):
        return Path(normal)
    return node.root / normal.lstrip("/")


# ---------------------------------------------------------------------------------------------
# Restarts, probes, tokens
# ---------------------------------------------------------------------------------------------


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def next_backoff(previous: float | None, ran_for: float) -> float:
    """The wait before the next restart: none the first time, then 10 s doubling up to 300 s; a
    container that ran for 10 minutes starts over."""
    if previous is None or ran_for >= RESTART_BACKOFF_RESET:
        return 0.0
    return min(RESTART_BACKOFF_MAX, max(RESTART_BACKOFF_INITIAL, previous * 2))


@dataclass(frozen=True)
class ProbeSettings:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def probe_settings(probe: Mapping[str, Any]) -> ProbeSettings:
    return ProbeSettings(
        initial_delay=float(probe.get("initialDelaySeconds") or 0), period=float(probe.get("periodSeconds") or 10),
        timeout=float(probe.get("timeoutSeconds") or 1), success_threshold=int(probe.get("successThreshold") or 1),
        failure_threshold=int(probe.get("failureThreshold") or 3),
    )


def named_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise PodSpecError("Unhealthy", f"container {container['name']}: no port named {port!r}")


def token_refresh_due(issued_at: float, expiration_seconds: float, now: float) -> bool:
    """The kubelet's rule: refresh after 80 % of the token's lifetime, or when it is a day old."""
    age = now - issued_at
    return age >= TOKEN_REFRESH_FRACTION * expiration_seconds or age >= TOKEN_REFRESH_MAX_AGE


def termination_grace(pod: Mapping[str, Any]) -> float:
    """The grace a deletion gives the pod: the deletion's own when set, else the spec's."""
    given = pod["metadata"].get("deletionGracePeriodSeconds")
    if given is None:
        given = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_SECONDS)
    return float(given)


# ---------------------------------------------------------------------------------------------
# Pod phase and conditions
# ---------------------------------------------------------------------------------------------


def pod_phase(restart_policy: str, statuses: Sequence[Mapping[str, Any]], initialized: bool = True) -> str:
    """The phase the kubelet derives from its containers' statuses (kubelet getPhase)."""
    if not initialized:
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif "terminated" in (status.get("lastState") or {}):
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def pod_conditions(
    previous: Sequence[Mapping[str, Any]], now: str, *, sandbox_ready: bool, initialized: bool,
    containers_ready: bool, readiness_gates: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The kubelet's pod conditions; a condition keeps its lastTransitionTime while its status holds."""
    before = {str(c.get("type")): c for c in previous}
    gates_ok = all(str((before.get(gate) or {}).get("status")) == "True" for gate in readiness_gates)
    wanted = {
        "PodReadyToStartContainers": sandbox_ready, "Initialized": initialized,
        "ContainersReady": containers_ready, "Ready": containers_ready and gates_ok,
    }
    conditions: list[dict[str, Any]] = []
    for kind, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else now
        condition: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        if not value and kind in ("ContainersReady", "Ready"):
            condition["reason"] = "ContainersNotReady"
        conditions.append(condition)
    return conditions
