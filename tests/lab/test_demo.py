"""The quick start's main job: a pod in member-1 reaches pods in member-2 through a VIP and the mesh."""

from __future__ import annotations

import subprocess
import sys

from lab import host
from lab.demo import CLIENT_NODE, MESH_NODES, VIP
from lab.testing import Federation


def test_the_demo_reaches_member_2_through_the_vip_and_undo_removes_it(federation: Federation) -> None:
    run = subprocess.run([sys.executable, "-m", "lab.demo"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "20/20 requests reached member-2 through the VIP." in run.stdout
    assert "web-1:" in run.stdout and "web-2:" in run.stdout  # both backends answered
    assert f"from {VIP}:80" in run.stdout  # the UDP reply shows the VIP
    assert "resolved by tier balancing" in run.stdout
    assert "redirected by balancing policy demo/web-in-member-2" in run.stdout

    undo = subprocess.run([sys.executable, "-m", "lab.demo", "--undo"], capture_output=True, text=True, timeout=300)
    assert undo.returncode == 0, undo.stderr
    for name in MESH_NODES:
        assert not host.link_exists("bfwg0", federation.node(name).netns), name
    node = federation.node(CLIENT_NODE)
    assert not node.bpffs.exists() or not any(node.bpffs.iterdir()), "socket LB pins left behind"
    assert "member-1/demo/client" not in federation.state.pods
