"""kill -9 of the process that owns the datapath, under load: no failed connect, and the restarted
process adopts the pins without rewriting what is already right."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from datapath.lb.reader import MapReader
from tests.datapath.conftest import BACKENDS, VIP, Topology, frontend, next_line

REPO = Path(__file__).resolve().parents[2]


def start_owner(topology: Topology, state_file: Path) -> tuple[subprocess.Popen[str], str]:
    """`balancing datapath apply --watch` as its own process; returns it and its first report line."""
    owner = topology.watch(state_file)
    line = next_line(owner.stdout)
    assert line, owner.stderr.read() if owner.stderr else "owner exited"
    return owner, line


def frontend_identity(topology: Topology) -> tuple[int, int]:
    with MapReader(topology.bpffs) as reader:
        (entry,) = reader.explain(VIP, 80, "TCP").entries
        return entry.frontend_id, entry.set_id


def test_kill_9_of_the_owner_under_load_loses_no_connect_and_restart_rewrites_nothing(
    topology: Topology, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.yaml"
    state_file.write_text(
        yaml.safe_dump({"tiers": {"service": [frontend(VIP, 80, BACKENDS[:3], policy="default/web")]}})
    )
    owner, first = start_owner(topology, state_file)
    assert "attached connect4" in first and "1 added" in first, first
    identity = frontend_identity(topology)

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(topology.client, "tcp", VIP, "80", "--rate", "20", "--duration", "5")
        time.sleep(1.5)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        time.sleep(1.0)  # connects go on with nobody owning the datapath
        restarted, line = start_owner(topology, state_file)
        result = load.result(timeout=60)

    assert result["failures"] == 0, result["errors"]
    assert result["attempts"] >= 90, result  # 20/s for 5 s
    assert f"{VIP}:80" not in result["answers"], "every connect was rewritten"
    assert "kept connect4, sendmsg4, recvmsg4, getpeername4" in line, line
    assert "0 added, 0 backend sets swapped, 0 options changed, 0 removed, 1 unchanged" in line, line
    assert "0 map elements written" in line, line
    assert frontend_identity(topology) == identity, "the frontend and its backend set were not rewritten"

    # The adopted owner still reconciles: a change to the file is applied.
    state_file.write_text(yaml.safe_dump({"tiers": {"service": [frontend(VIP, 80, BACKENDS[3:4])]}}))
    assert restarted.stdout is not None
    ready, _, _ = select.select([restarted.stdout], [], [], 10)
    assert ready and "1 backend sets swapped" in restarted.stdout.readline()
    assert topology.client("tcp", VIP, "80", "--count", "5")["answers"] == {f"{BACKENDS[3]}:8080": 5}
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=10) == 0
