"""The product's main job on the lab, end to end, with the parts that exist so far.

A client pod in member-1 connects to a VIP; the cgroup eBPF socket load balancer on its node
rewrites connect() in the kernel to backend pods in member-2, reached through the WireGuard mesh.
The hub's planner allocates the node proxy IPs and peer sets (hub.mesh); each node applies its
share (`balancing datapath tunnel apply`); the client node gets its desired socket-LB state
(`balancing datapath apply`). Afterwards: `balancing datapath explain` says why, and the event
stream shows each resolution.

python -m lab.demo           (the lab must be up: `balancing lab up`)
python -m lab.demo --undo    removes what the demo added (pods, tunnels, socket LB), keeps the lab
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys

from lab.host import LabError
from lab.mesh import LabMesh
from lab.state import LAB_DIR
from lab.testing import Federation

VIP = "169.254.100.10"
VIP_PORT = 80
NAMESPACE = "demo"
CLIENT_NODE = "member-1-node-1"
BACKENDS = {"web-1": "member-2-node-1", "web-2": "member-2-node-2"}
MESH_NODES = ("member-1-node-1", "member-1-node-2", "member-2-node-1", "member-2-node-2")
CONNECTS = 20


def balancing(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "balancing", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise LabError(f"balancing {' '.join(args)}: {result.stderr.strip()}")
    return result


def step(text: str) -> None:
    print(f"\n## {text}", flush=True)


def undo(lab: Federation) -> None:
    mesh = LabMesh(lab, LAB_DIR / "demo")
    node = lab.node(CLIENT_NODE)
    balancing("datapath", "detach", "--bpffs", str(node.bpffs), "--cgroup", str(node.cgroup))
    mesh.down(MESH_NODES)
    for cluster, name in [("member-1", "client"), *(("member-2", backend) for backend in BACKENDS)]:
        if f"{cluster}/{NAMESPACE}/{name}" in lab.state.pods:
            lab.remove_pod(cluster, NAMESPACE, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--undo", action="store_true", help="remove what the demo added")
    args = parser.parse_args()
    lab = Federation()
    if args.undo:
        undo(lab)
        print("demo removed; the lab is still up")
        return 0
    workdir = LAB_DIR / "demo"
    workdir.mkdir(parents=True, exist_ok=True)

    step("pods: two web backends in member-2, one client in member-1")
    backends = {name: lab.pod("member-2", NAMESPACE, name, node=node, labels={"app": "web"})
                for name, node in BACKENDS.items()}
    client = lab.pod("member-1", NAMESPACE, "client", node=CLIENT_NODE)
    for name, pod in backends.items():
        print(f"  member-2/{NAMESPACE}/{name} on {pod.node}: {pod.ip}")
    print(f"  member-1/{NAMESPACE}/client on {client.node}: {client.ip}")

    step("WireGuard mesh: the hub plans proxy IPs and peers, each node applies its share")
    mesh = LabMesh(lab, workdir)
    mesh.apply(MESH_NODES)
    for name in MESH_NODES:
        status = mesh.status(name)
        print(f"  {name}: proxy {mesh.proxy_ip(name)}, {len(status['peers'])} peers, {status['implementation']}")

    step(f"socket load balancer on {CLIENT_NODE}: {VIP}:{VIP_PORT} -> the member-2 pods")
    node = lab.node(CLIENT_NODE)
    state = {"tiers": {"balancing": [
        {"ip": VIP, "port": VIP_PORT, "protocol": protocol, "policy": "demo/web-in-member-2",
         "backends": [{"ip": str(pod.ip), "port": pod.port} for pod in backends.values()]}
        for protocol in ("TCP", "UDP")
    ]}}
    state_file = workdir / "member-1-node-1.socket-lb.json"
    state_file.write_text(json.dumps(state, indent=2))
    print(balancing("datapath", "apply", "--bpffs", str(node.bpffs), "--cgroup", str(node.cgroup),
                    str(state_file)).stdout.rstrip())

    step(f"{CONNECTS} HTTP requests from the client pod to http://{VIP}/ (curl)")
    answers: collections.Counter[str] = collections.Counter()
    for _ in range(CONNECTS):
        result = lab.exec(client.key, ["curl", "-s", "--max-time", "5", f"http://{VIP}:{VIP_PORT}/"])
        answers[result.stdout.strip() or f"failed: {result.stderr.strip()}"] += 1
    for answer, count in sorted(answers.items()):
        print(f"  {answer}: {count}")

    step(f"one UDP datagram to {VIP}:{VIP_PORT}: the reply comes from the VIP")
    probe = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5);"
             f"s.sendto(b'q', ('{VIP}', {VIP_PORT})); data, peer = s.recvfrom(100);"
             "print(data.decode().strip(), 'from', '%s:%d' % peer)")
    print("  " + lab.exec(client.key, [sys.executable, "-c", probe]).stdout.strip())

    step(f"why did it go there? balancing datapath explain {VIP} {VIP_PORT} TCP")
    print(balancing("datapath", "explain", "--bpffs", str(node.bpffs), VIP, str(VIP_PORT), "TCP").stdout.rstrip())

    step("the last resolutions, from the kernel's event ring")
    events = balancing("datapath", "events", "--bpffs", str(node.bpffs), "--timeout", "1")
    for line in events.stdout.splitlines()[-3:]:
        print("  " + line)

    failed = sum(count for answer, count in answers.items() if answer not in BACKENDS)
    print(f"\n{CONNECTS - failed}/{CONNECTS} requests reached member-2 through the VIP.")
    print(f"Kept for you to explore; state files in {workdir}. Remove everything with: balancing lab down")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
