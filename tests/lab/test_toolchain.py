"""The install step's tools: each resolves to a real binary of the pinned (or a fitting) version."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lab import toolchain
from lab.toolchain import TOOLS, ToolchainError


def _is_ours(binary: Path) -> bool:
    """True when the link points into the cache (we provided it), not at a binary found on PATH."""
    return Path(os.path.realpath(binary)).is_relative_to(toolchain.cache_dir().resolve())


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_resolves_to_a_binary_of_the_pinned_version(name: str) -> None:
    tool = TOOLS[name]
    binary = toolchain.tool_path(name)
    result = subprocess.run([str(binary), *tool.version_args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{binary} {' '.join(tool.version_args)}: {result.stderr}"
    version = toolchain.tool_version(binary, tool)
    assert toolchain.fits(tool, version), f"{name} at {binary} reports {version}"
    if _is_ours(binary):
        assert toolchain.format_version(version) == tool.pinned, f"{name} at {binary}: {result.stdout}"


@pytest.mark.parametrize("name", toolchain.KUBERNETES_COMMANDS)
def test_kubernetes_binaries_carry_the_release_version(name: str) -> None:
    output = subprocess.run([str(toolchain.tool_path(name)), "--version"], capture_output=True, text=True).stdout
    assert output.strip() == f"Kubernetes v{toolchain.KUBERNETES_VERSION}"


def test_lab_path_prefers_the_pinned_kubectl_over_an_older_system_one() -> None:
    env = {**os.environ, "PATH": toolchain.path_with_tools()}
    output = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, env=env)
    client = json.loads(output.stdout)["clientVersion"]
    assert (client["major"], client["minor"]) == ("1", "35")


def test_system_tools_from_os_packages_are_present() -> None:
    assert toolchain.missing_apt_packages() == []
    for name in toolchain.SYSTEM_TOOLS:
        assert toolchain.tool_path(name).is_file(), name


def test_debian13_packages_were_never_installed_into_the_system() -> None:
    query = ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\n"]
    result = subprocess.run([*query, "libc6", *toolchain.DEBIAN_EXTRA_PACKAGES], capture_output=True, text=True)
    installed = dict((line.split()[0], line.split()[2]) for line in result.stdout.splitlines() if " installed " in line)
    for package in toolchain.DEBIAN_EXTRA_PACKAGES:
        assert package not in installed, f"{package} {installed.get(package)} is installed in the system"
    assert installed["libc6"].startswith("2.36-"), f"the system libc changed: {installed['libc6']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_etcd_serves_the_readiness_endpoint_kubernetes_needs(tmp_path: Path) -> None:
    client, peer = _free_port(), _free_port()
    etcd = subprocess.Popen(
        [str(toolchain.tool_path("etcd")), "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/readyz", timeout=2) as response:
                    body = response.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert body.strip() == "ok", f"etcd /readyz answered {body!r}"
    finally:
        etcd.kill()
        etcd.wait()


def test_warm_install_of_the_tools_is_fast_and_changes_nothing() -> None:
    steps = [name for name in toolchain.STEP_ORDER if name in TOOLS]
    for name in steps:  # never start a cold build from a test: the install step must have run
        toolchain.tool_path(name)
    before = {name: os.path.realpath(toolchain.bin_dir() / name) for name in steps}
    started = time.monotonic()
    toolchain.ensure_all(steps)
    assert time.monotonic() - started < 15
    assert {name: os.path.realpath(toolchain.bin_dir() / name) for name in steps} == before


def test_missing_tool_error_names_the_tool_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALANCING_CACHE", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"'etcd' is not installed .*bash lab/install.sh"):
        toolchain.tool_path("etcd")
    with pytest.raises(ToolchainError, match=r"unknown tool 'kubelet'"):
        toolchain.tool_path("kubelet")
    with pytest.raises(ToolchainError, match=r"unknown install step\(s\) kubelet"):
        toolchain.ensure_all(["kubelet"])


def test_version_range_bounds() -> None:
    etcd = TOOLS["etcd"]
    assert not toolchain.fits(etcd, (3, 4, 23))  # Debian 12's etcd: too old for Kubernetes 1.35
    assert toolchain.fits(etcd, (3, 5, 11))
    assert not toolchain.fits(etcd, (3, 7, 0))
    assert not toolchain.fits(TOOLS["kubectl"], (1, 32, 3))  # the machine's /usr/bin/kubectl
    assert not toolchain.fits(TOOLS["kube-apiserver"], None)


def test_kubernetes_ldflags_stamp_the_pinned_release() -> None:
    flags = toolchain.kubernetes_ldflags()
    assert f"k8s.io/component-base/version.gitVersion=v{toolchain.KUBERNETES_VERSION}" in flags
    assert "version.gitMinor=35" in flags
