"""The public API: what `datapath`, `datapath.lb` and `datapath.tunnel` export, and the settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import datapath
from datapath import lb, paths, tunnel

REPO = Path(__file__).resolve().parents[2]
AGENT_CONTRACT = [
    *("SocketLB", "DesiredState", "Tiers", "FrontendSpec", "BackendSpec", "Tier", "Capacity", "ApplyReport"),
    *("parse_state", "load_state", "MapReader", "EventStream", "ResolutionEvent", "Explanation", "NODE_PORT_ANY"),
]


@pytest.mark.parametrize("package", [lb, tunnel], ids=["lb", "tunnel"])
def test_every_exported_name_resolves_and_nothing_else_is_exported(package: object) -> None:
    exported = package._EXPORTS  # type: ignore[attr-defined]
    assert sorted(package.__all__) == sorted(exported)  # type: ignore[attr-defined]
    for name in package.__all__:  # type: ignore[attr-defined]
        assert getattr(package, name) is getattr(__import__(exported[name], fromlist=[name]), name)
    with pytest.raises(AttributeError):
        package.writer_internals  # type: ignore[attr-defined]  # noqa: B018


def test_the_agent_contract_and_one_error_root() -> None:
    assert set(AGENT_CONTRACT) <= set(lb.__all__)
    assert lb.StateError is datapath.StateError and issubclass(datapath.StateError, datapath.DatapathError)
    assert issubclass(tunnel.TunnelError, datapath.DatapathError)
    assert issubclass(tunnel.InvalidTunnelState, datapath.StateError)
    assert {"ApplyReport"} <= set(lb.__all__) & set(tunnel.__all__), "one report naming in both halves"


def test_importing_the_command_line_pulls_in_neither_libbpf_nor_pydantic() -> None:
    code = (
        "import sys, balancing.cli as c; c.build_parser(); "
        "print(sorted(m for m in sys.modules if m in ('pydantic', 'datapath.lb.libbpf', 'pyroute2')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_treat_an_empty_value_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BALANCING_CACHE", "")
    monkeypatch.setenv("BALANCING_NODE_INDEX_DIR", "")
    assert paths.cache_root() == Path.home() / ".cache" / "balancing"
    assert paths.node_index_dir() == paths.DEFAULT_NODE_INDEX_DIR
    monkeypatch.setenv("BALANCING_CACHE", str(tmp_path))
    monkeypatch.setenv("BALANCING_NODE_INDEX_DIR", str(tmp_path / "nodes"))
    assert paths.cache_root() == tmp_path
    assert paths.node_index_dir() == tmp_path / "nodes"
