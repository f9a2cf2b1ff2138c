"""The quick start's main job, through the components Helm installs: the hub and two members joined with
`balancing hub add-member`, the seed policies live and Ready on member-1, a member-1 pod reaching member-2
pods through an MCS ServiceImport over the mesh, a hub policy Ready in both members; then --undo."""

from __future__ import annotations

import json
import subprocess
import sys

from lab import host
from lab.demo import CLIENT_NODE, CROSS_POLICY, MESH_NODES
from lab.testing import Federation


def test_the_demo_runs_the_main_job_and_undo_removes_it(federation: Federation) -> None:
    run = subprocess.run([sys.executable, "-m", "lab.demo"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for seed in ("test-service-podendpoint", "test-service-hostport", "test-service-nodeproxy", "test-addr",
                 "test-service"):
        assert seed in out
    assert "(LocalRedirectPolicy test-addr): http-redirect-1" in out, "the local pod on the client's node"
    assert "20/20 requests reached member-2 through the ServiceImport." in out
    assert "web-1:" in out and "web-2:" in out  # both backends answered
    assert "from 10.255." in out, "the UDP reply shows the clusterset IP"
    assert "resolved by tier service" in out
    assert '"policy": "import ' in out, "the agent logged the resolution of the import"
    for cluster in ("member-1", "member-2"):
        policy = json.loads(federation.kubectl(cluster, "get", "bp", f"hub.{CROSS_POLICY}", "-o", "json").stdout)
        assert {c["type"]: c["status"] for c in policy["status"]["conditions"]}["Ready"] == "True"

    undo = subprocess.run([sys.executable, "-m", "lab.demo", "--undo"], capture_output=True, text=True, timeout=600)
    assert undo.returncode == 0, undo.stderr
    for name in MESH_NODES:
        assert not host.link_exists("bfwg0", federation.node(name).netns), name
    pins = federation.node(CLIENT_NODE).bpffs / "balancing"
    assert not pins.exists() or not any(pins.iterdir()), "socket LB pins left behind"
    assert not json.loads(federation.kubectl("member-1", "get", "bp,lrp", "-o", "json").stdout)["items"]
