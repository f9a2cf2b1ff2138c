"""The built wheel is a working product outside the checkout: the command, the CRDs, the BPF sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_an_installed_wheel_builds_the_bpf_object_from_its_own_sources(tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ into the tree it builds
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(source)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheel_dir.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith("share/balancing/bpf/bf_sock.c") for name in names)
    assert any(name.endswith("share/balancing/bpf/lib/maps.h") for name in names)
    assert "crds/balancing.elf.io_balancingpolicies.yaml" in names
    assert "crds/multicluster.x-k8s.io_serviceimports.yaml" in names
    # add-member renders a member's hub objects from the chart the package carries
    assert any(name.endswith("share/balancing/charts/hub/templates/_helpers.tpl") for name in names)
    assert any(name.endswith("share/balancing/charts/hub/values.schema.json") for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "BALANCING_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}
    located = subprocess.run([str(venv / "bin" / "python"), "-c", "import datapath; print(datapath.bpf_source_dir())"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert located.stdout.strip() == str(venv / "share" / "balancing" / "bpf"), located.stderr
    built = subprocess.run([str(venv / "bin" / "balancing"), "datapath", "build"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert list((tmp_path / "cache" / "bpf").rglob("bf_sock.o")), built.stdout
