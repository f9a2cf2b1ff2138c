"""The package layering holds: import-linter contracts in pyproject.toml, checked on every run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_contracts_cover_the_rules_we_promise() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for rule in (
        'modules = ["hub", "member"]',
        '"kubernetes", "kopf", "hub", "member", "lab"',
        'source_modules = ["hub", "member", "datapath", "crds"]',
        'containers = ["datapath.lb"]',
        'protected_modules = ["datapath.*.*", "datapath.cli", "datapath.errors", "datapath.paths", "datapath.process"]',
    ):
        assert rule in text


def test_a_forbidden_import_breaks_the_contracts(tmp_path: Path) -> None:
    """The check can fail: a scratch tree where datapath imports kubernetes, hub imports member, a low
    layer of datapath.lb imports a high one, and the lab reaches into datapath.lb's internals."""
    for package in ("balancing", "hub", "member", "datapath", "datapath/lb", "datapath/tunnel", "crds", "lab"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for module in ("abi", "bpfsys", "libbpf", "cgroups", "codec", "state", "plan", "maps", "writer", "reader",
                   "loader", "build", "facade", "cli"):
        (tmp_path / "datapath" / "lb" / f"{module}.py").write_text("")
    for module in ("cli", "errors", "paths", "process"):
        (tmp_path / "datapath" / f"{module}.py").write_text("")
    (tmp_path / "datapath" / "maps.py").write_text("import kubernetes\n")
    (tmp_path / "hub" / "sync.py").write_text("import member\n")
    (tmp_path / "datapath" / "lb" / "codec.py").write_text("from datapath.lb import writer\n")
    (tmp_path / "lab" / "demo.py").write_text("from datapath.lb.abi import *\nfrom datapath.lb import facade\n")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint_imports], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "hub and member never import each other BROKEN" in result.stdout
    assert "datapath talks to the kernel only" in result.stdout and "4 broken" in result.stdout
    assert "datapath.lb.codec -> datapath.lb.writer" in result.stdout
    assert "lab.demo -> datapath.lb.abi" in result.stdout and "lab.demo -> datapath.lb.facade" in result.stdout
