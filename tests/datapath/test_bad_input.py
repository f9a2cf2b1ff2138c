"""Malformed desired state is rejected by `balancing datapath apply` with an error naming the
entry, and the kernel maps stay exactly as they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from datapath.lb.maps import LbMaps
from datapath.lb.state import MAX_BACKENDS_PER_FRONTEND
from tests.datapath.conftest import BACKENDS, VIP, Topology, frontend

REPO = Path(__file__).resolve().parents[2]
GOOD: dict[str, Any] = {
    "tiers": {
        "localRedirect": [frontend(VIP, 80, BACKENDS[:1], policy="kube-system/local")],
        "service": [frontend(VIP, 80, BACKENDS[:3], policy="default/web"), frontend("10.96.0.20", 80, BACKENDS[3:5])],
    }
}


def with_service(entry: dict[str, Any]) -> dict[str, Any]:
    return {"tiers": {**GOOD["tiers"], "service": [GOOD["tiers"]["service"][0], entry]}}


def many_backends(count: int) -> list[str]:
    return [f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}:80" for i in range(count)]


CASES = {
    "unknown protocol": (
        with_service(frontend("10.96.0.20", 80, BACKENDS[3:5], protocol="SCTP")),
        "tiers.service[1] 10.96.0.20:80/SCTP: protocol: unknown protocol 'SCTP': expected TCP or UDP",
    ),
    "frontend port 0": (
        with_service(frontend("10.96.0.20", 0, BACKENDS[3:5])),
        "tiers.service[1] 10.96.0.20:0/TCP: port: must be 1-65535",
    ),
    "backend port 0": (
        with_service(frontend("10.96.0.20", 80, [f"{BACKENDS[3]}:0"])),
        "tiers.service[1] 10.96.0.20:80/TCP: backends[0].port: must be 1-65535",
    ),
    "duplicate frontend in one tier": (
        {"tiers": {**GOOD["tiers"], "localRedirect": [frontend(VIP, 80, BACKENDS[:1]), frontend(VIP, 80, [])]}},
        "tiers.localRedirect[1] 10.96.0.10:80/TCP: duplicate frontend, already defined at tiers.localRedirect[0]",
    ),
    "more backends than one frontend holds": (
        with_service(frontend("10.96.0.20", 80, many_backends(MAX_BACKENDS_PER_FRONTEND + 1))),
        f"tiers.service[1] 10.96.0.20:80/TCP: backends: {MAX_BACKENDS_PER_FRONTEND + 1} backends, more than",
    ),
    "more backends than the map holds": (
        {"tiers": {"service": [frontend(f"10.96.1.{i}", 80, many_backends(16384)) for i in range(9)]}},
        "tiers: 147456 backends in all, more than the backend map holds (131072",
    ),
    "bad address": (
        with_service(frontend("10.96.0.300", 80, [])),
        "tiers.service[1] 10.96.0.300:80/TCP: ip: '10.96.0.300' is not an IPv4 address",
    ),
    "unknown field": (
        with_service({**frontend("10.96.0.20", 80, []), "sessionAffinity": "ClientIP"}),
        "tiers.service[1] 10.96.0.20:80/TCP: sessionAffinity: Extra inputs are not permitted",
    ),
}


def snapshot(bpffs: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    with LbMaps(bpffs) as maps:
        return {
            opened.name: sorted(opened.items())
            for opened in (maps.frontends, maps.backends, maps.members, maps.policies, maps.meta, maps.qos)
        }


def apply(topology: Topology, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "balancing",
            "datapath",
            "apply",
            "--bpffs",
            str(topology.bpffs),
            "--cgroup",
            str(topology.cgroup),
            str(path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_states_are_rejected_by_name_and_change_nothing(topology: Topology, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert apply(topology, good).returncode == 0
    before = snapshot(topology.bpffs)
    assert before["bf_lb4_fe_v2"], "the good state is loaded"

    for name, (document, expected) in CASES.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.json"
        bad.write_text(json.dumps(document))
        result = apply(topology, bad)
        assert result.returncode == 2, f"{name}: {result.stderr}"
        assert result.stderr.startswith(f"balancing: error: {bad}: invalid desired state: "), result.stderr
        assert expected in result.stderr, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr
        assert snapshot(topology.bpffs) == before, f"{name}: the maps changed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("tiers: [unclosed", "not valid YAML"), ("- just\n- a list\n", "document: Input should be a valid dictionary")],
)
def test_unreadable_files_are_rejected_before_anything_is_loaded(
    topology: Topology, tmp_path: Path, text: str, expected: str
) -> None:
    bad = tmp_path / "state.yaml"
    bad.write_text(text)

    result = apply(topology, bad)

    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert not any(topology.bpffs.iterdir()), "nothing was loaded or pinned"
