"""The product's main job on the lab, end to end, with every component installed by Helm.

1. The hub chart on the hub; `balancing hub add-member` for member-1 and member-2, and the member chart
   with the values it prints: node agents (the only Service implementation in the lab: no kube-proxy)
   and member controllers, which join the hub, build the WireGuard mesh and heartbeat.
2. The seed examples (examples/seeds/, the user guides' policies) become live on member-1: the
   Services and pods they name are created, the policies applied verbatim, and `kubectl get bp,lrp`
   shows them Ready; a client pod's curl to a Service goes where the policy says.
3. Across clusters, with the standard MCS API: member-2 exports a Service with a ServiceExport; a
   member-1 pod curls its ServiceImport's clusterset IP and reaches member-2's pods through the mesh.
4. A BalancingPolicy applied on the hub becomes Ready in both members and resolves, in each, to the
   pods it selects in every cluster.

python -m lab.demo           (the lab must be up: `balancing lab up`)
python -m lab.demo --undo    removes what the demo added, keeps the lab
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.federation import echo_pod
from lab.host import LabError
from lab.state import LAB_DIR, NODE_INDEX_DIR
from lab.testing import Federation
from lab.toolchain import tool_path

REPO = Path(__file__).resolve().parent.parent
MEMBERS = ("member-1", "member-2")
RELEASE = "balancing-member"
HUB_RELEASE = "balancing-hub"
SYSTEM = "balancing-system"
SEEDS = REPO / "examples" / "seeds"
SEED_NAMESPACE = "default"
NAMESPACE = "demo"
VIP = "169.254.100.10"
VIP_PORT = 80
CLIENT_NODE = "member-1-node-1"
BACKENDS = {"web-1": "member-2-node-1", "web-2": "member-2-node-2"}
MESH_NODES = ("member-1-node-1", "member-1-node-2", "member-2-node-1", "member-2-node-2")
CROSS_POLICY = "web-everywhere"
CONNECTS = 20
# What the seed examples name: their Services (selector app=http-server) and backend pods (app=http-redirect).
SEED_SERVICES = {
    "http-server-balancing-pod-v4": [("p1", 8080), ("p2", 80)],
    "http-server-balancing-hostport-v4": [("p2", 80)],
    "http-server-balancing-nodeproxy-v4": [("p2", 80)],
    "http-server-v4": [("p1", 8080), ("p2", 80)],
}
SEED_PODS = {"http-server": "member-1-node-2", "http-redirect-1": "member-1-node-1",
             "http-redirect-2": "member-1-node-2", "seed-client": "member-1-node-1"}


def step(text: str) -> None:
    print(f"\n## {text}", flush=True)


def helm(lab: Federation, cluster: str, *args: str, check: bool = True) -> str:
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig(cluster))}
    result = subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise LabError(f"helm {' '.join(args)} on {cluster}: {result.stderr.strip()}")
    return result.stdout


def kubectl_apply(lab: Federation, cluster: str, *objects: dict[str, Any]) -> None:
    lab.kubectl(cluster, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                 "items": list(objects)}))


def wait_ready(lab: Federation, cluster: str, namespace: str, names: list[str]) -> None:
    lab.kubectl(cluster, "wait", "--for=condition=Ready", *(f"pod/{name}" for name in names), "-n", namespace,
                "--timeout=120s")


def curl(lab: Federation, target: str, url: str) -> str:
    result = lab.exec(target, ["curl", "-s", "--max-time", "3", url])
    return result.stdout.strip() or f"failed: {result.stderr.strip() or result.returncode}"


def install_hub(lab: Federation) -> None:
    """`helm install` the hub chart, with a hub namespace for each of MEMBERS."""
    helm(lab, "hub", "upgrade", "--install", HUB_RELEASE, str(REPO / "charts" / "hub"), "-n", SYSTEM,
         "--create-namespace", *(arg for i, m in enumerate(MEMBERS) for arg in ("--set", f"members[{i}].name={m}")),
         "--wait", "--timeout", "180s")


def install_member(lab: Federation, cluster: str, values: Path, *settings: str, wait: bool = True) -> None:
    """`helm install` the member chart with the values `add_member` printed (and `--set` settings)."""
    helm(lab, cluster, "upgrade", "--install", RELEASE, str(REPO / "charts" / "member"), "-n", SYSTEM,
         "--create-namespace", "-f", str(values), *settings, *(["--wait", "--timeout", "180s"] if wait else []))


def install(lab: Federation) -> None:
    step("helm install the hub chart on the hub (the hub operator)")
    install_hub(lab)
    print(lab.kubectl("hub", "get", "pods", "-n", SYSTEM, "-o", "wide").stdout.rstrip())
    workdir = LAB_DIR / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    for cluster in MEMBERS:
        step(f"balancing hub add-member {cluster}, then helm install the member chart with what it prints")
        install_member(lab, cluster, add_member(lab, cluster, workdir))
        print(lab.kubectl(cluster, "get", "pods", "-n", SYSTEM, "-o", "wide").stdout.rstrip())
    step("the hub sees both members Ready; every node got a proxy IPv4 and its WireGuard peers")
    for cluster in MEMBERS:
        lab.kubectl("hub", "wait", "--for=condition=Ready", f"membercluster/{cluster}", "-n", cluster,
                    "--timeout=120s")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(_meshed(lab, cluster) for cluster in MEMBERS):
        time.sleep(1.0)
    print(lab.kubectl("hub", "get", "memberclusters,nodetunnelendpoints", "-A").stdout.rstrip())


def add_member(lab: Federation, cluster: str, directory: Path) -> Path:
    """`balancing hub add-member CLUSTER`; returns the values file it printed, for the member chart."""
    values = directory / f"{cluster}.values.yaml"
    joined = subprocess.run([sys.executable, "-m", "balancing", "hub", "add-member", cluster, "--kubeconfig",
                             str(lab.kubeconfig("hub"))], capture_output=True, text=True, timeout=120)
    if joined.returncode != 0:
        raise LabError(f"balancing hub add-member {cluster}: {joined.stderr.strip()}")
    values.write_text(joined.stdout)
    return values


def _meshed(lab: Federation, cluster: str) -> bool:
    nodes = json.loads(lab.kubectl(cluster, "get", "balancingnodes", "-o", "json").stdout)["items"]
    return len(nodes) == 2 and all(((n.get("spec") or {}).get("tunnel") or {}).get("peers") for n in nodes)


def seed_policies(lab: Federation) -> dict[str, str]:
    step("the seed examples, live on member-1: their Services and pods, then the policies verbatim")
    cluster = "member-1"
    kubectl_apply(lab, cluster, *(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": SEED_NAMESPACE},
         "spec": {"selector": {"app": "http-server"},
                  "ports": [{"name": port_name, "port": port, "targetPort": 80} for port_name, port in ports]}}
        for name, ports in SEED_SERVICES.items()))
    pods = [echo_pod(SEED_NAMESPACE, name, node, {"app": name.rsplit("-", 1)[0] if name[-1].isdigit() else name},
                     80, 20080 if name.startswith("http-redirect") else None)
            for name, node in SEED_PODS.items()]
    kubectl_apply(lab, cluster, *pods)
    wait_ready(lab, cluster, SEED_NAMESPACE, list(SEED_PODS))
    # nodeProxy mode reaches the http-redirect pods' hostPort 20080 on each node's proxy IPv4, which the hub
    # allocated and the member controller wrote on the Node (balancing.elf.io/nodeProxyIpv4).
    print(lab.kubectl(cluster, "apply", "-f", str(SEEDS)).stdout.rstrip())
    names = [f"balancingpolicy/{p.stem.split('-', 2)[2]}" for p in sorted(SEEDS.glob("000-*.yaml"))] + \
            [f"localredirectpolicy/{p.stem.split('-', 2)[2]}" for p in sorted(SEEDS.glob("003-*.yaml"))]
    lab.kubectl(cluster, "wait", "--for=condition=Ready", *names, "--timeout=60s")
    print(lab.kubectl(cluster, "get", "balancingpolicies,localredirectpolicies", "-o", "wide").stdout.rstrip())
    client = f"{cluster}/{SEED_NAMESPACE}/seed-client"
    results: dict[str, str] = {}
    for service in ("http-server-balancing-pod-v4", "http-server-balancing-hostport-v4",
                    "http-server-balancing-nodeproxy-v4", "http-server-v4"):
        ip = json.loads(lab.kubectl(cluster, "get", "service", service, "-o", "json").stdout)["spec"]["clusterIP"]
        answers = collections.Counter(curl(lab, client, f"http://{ip}:80/") for _ in range(6))
        results[service] = ", ".join(f"{answer} x{count}" for answer, count in sorted(answers.items()))
        print(f"  curl http://{ip}/ ({service}): {results[service]}")
    results["169.254.0.90"] = curl(lab, client, "http://169.254.0.90:80/")
    print(f"  curl http://169.254.0.90/ (LocalRedirectPolicy test-addr): {results['169.254.0.90']}")
    return results


def cross_cluster(lab: Federation) -> int:
    step("member-2 exports a Service (MCS ServiceExport); a member-1 pod reaches it through its ServiceImport")
    for cluster in MEMBERS:
        lab.kubectl(cluster, "create", "namespace", NAMESPACE, check=False)
    kubectl_apply(lab, "member-2", *(echo_pod(NAMESPACE, name, node, {"app": "web"}, 8080, None)
                                     for name, node in BACKENDS.items()))
    kubectl_apply(lab, "member-2", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                           {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}]}},
        {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
         "metadata": {"name": "web", "namespace": NAMESPACE}})
    kubectl_apply(lab, "member-1", echo_pod(NAMESPACE, "client", CLIENT_NODE, {"app": "client"}, 8080, None))
    wait_ready(lab, "member-2", NAMESPACE, list(BACKENDS))
    wait_ready(lab, "member-1", NAMESPACE, ["client"])
    ip = ""
    deadline = time.monotonic() + 120
    while not ip and time.monotonic() < deadline:
        found = lab.kubectl("member-1", "get", "serviceimports.multicluster.x-k8s.io", "web", "-n", NAMESPACE,
                            "-o", "json", check=False)
        ip = next(iter((json.loads(found.stdout).get("spec") or {}).get("ips") or []), "") if found.returncode == 0 \
            else ""
        time.sleep(0.5)
    if not ip:
        raise LabError("member-1 has no ServiceImport web with a clusterset IP after 120 s")
    print(lab.kubectl("member-2", "get", "serviceexports.multicluster.x-k8s.io", "-n", NAMESPACE).stdout.rstrip())
    print(lab.kubectl("member-1", "get", "serviceimports.multicluster.x-k8s.io", "-n", NAMESPACE).stdout.rstrip())
    client = f"member-1/{NAMESPACE}/client"
    time.sleep(1.0)
    step(f"{CONNECTS} HTTP requests from the member-1 client to http://{ip}/ (the clusterset IP)")
    answers = collections.Counter(curl(lab, client, f"http://{ip}:80/") for _ in range(CONNECTS))
    for answer, count in sorted(answers.items()):
        print(f"  {answer}: {count}")
    probe = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5);"
             f"s.sendto(b'q', ('{ip}', 53)); data, peer = s.recvfrom(100);"
             "print(data.decode().strip(), 'from', '%s:%d' % peer)")
    print("  one UDP datagram: " + lab.exec(client, [sys.executable, "-c", probe]).stdout.strip())

    step(f"a BalancingPolicy applied on the hub: {VIP}:{VIP_PORT} -> the pods labelled app=web, in every member")
    kubectl_apply(lab, "hub", {
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingPolicy", "metadata": {"name": CROSS_POLICY},
        "spec": {"frontend": {"addressMatcher": {"ip": VIP, "toPorts": [
                     {"port": str(VIP_PORT), "protocol": "TCP", "name": "http"}]}},
                 "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "web"}},
                                                 "toPorts": [{"port": "8080", "protocol": "TCP", "name": "http"}]}}}})
    for cluster in MEMBERS:
        deadline = time.monotonic() + 120  # the member controller copies it from the hub first
        while lab.kubectl(cluster, "get", "bp", f"hub.{CROSS_POLICY}", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise LabError(f"{cluster} has no copy hub.{CROSS_POLICY} of the hub's policy after 120 s")
            time.sleep(0.5)
        lab.kubectl(cluster, "wait", "--for=condition=Ready", f"balancingpolicy/hub.{CROSS_POLICY}", "--timeout=120s")
        print(f"  {cluster}: " + lab.kubectl(cluster, "get", "bp", f"hub.{CROSS_POLICY}", "-o", "wide")
              .stdout.rstrip().replace("\n", "\n  "))
    via_policy = collections.Counter(curl(lab, client, f"http://{VIP}:{VIP_PORT}/") for _ in range(10))
    print("  curl from member-1: " + ", ".join(f"{a} x{c}" for a, c in sorted(via_policy.items())))

    step(f"why did it go there? balancing datapath explain {ip} 80 TCP (on {CLIENT_NODE})")
    bpffs = lab.node(CLIENT_NODE).bpffs / "balancing"
    explained = subprocess.run([sys.executable, "-m", "balancing", "datapath", "explain", "--bpffs", str(bpffs),
                                ip, "80", "TCP"], capture_output=True, text=True, timeout=60)
    print(explained.stdout.rstrip() or explained.stderr.rstrip())

    step("the last resolutions, from the node agent's log (it reads the kernel's event ring)")
    agents = json.loads(lab.kubectl("member-1", "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=agent",
                                    "--field-selector", f"spec.nodeName={CLIENT_NODE}", "-o", "json").stdout)["items"]
    time.sleep(1.0)
    log = subprocess.run([sys.executable, "-m", "balancing", "lab", "logs",
                          f"member-1/{SYSTEM}/{agents[0]['metadata']['name']}"], capture_output=True, text=True,
                         timeout=60).stdout
    for line in [line for line in log.splitlines() if '"resolution"' in line and ip in line][-2:]:
        print("  " + line)

    step("the federation as the hub sees it: balancing status")
    status = subprocess.run([sys.executable, "-m", "balancing", "status", "--kubeconfig", str(lab.kubeconfig("hub"))],
                            capture_output=True, text=True, timeout=60)
    print(status.stdout.rstrip() or status.stderr.rstrip())

    failed = sum(count for answer, count in answers.items() if answer not in BACKENDS)
    failed += sum(count for answer, count in via_policy.items() if answer not in BACKENDS)
    print(f"\n{CONNECTS - min(failed, CONNECTS)}/{CONNECTS} requests reached member-2 through the ServiceImport.")
    return failed


def undo(lab: Federation) -> None:
    lab.kubectl("hub", "delete", "bp", CROSS_POLICY, "--ignore-not-found", check=False)
    lab.kubectl("member-1", "delete", "-f", str(SEEDS), "--ignore-not-found", check=False)
    lab.kubectl("member-1", "delete", "service", *SEED_SERVICES, "-n", SEED_NAMESPACE, "--ignore-not-found",
                check=False)
    lab.kubectl("member-1", "delete", "pod", *SEED_PODS, "-n", SEED_NAMESPACE, "--ignore-not-found", "--wait=true",
                check=False)
    for node in lab.nodes("member-1"):
        lab.kubectl("member-1", "annotate", "node", node.name, "balancing.elf.io/nodeProxyIpv4-", check=False)
    for cluster in MEMBERS:
        lab.kubectl(cluster, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", check=False)
        uninstall_member(lab, cluster)
    helm(lab, "hub", "uninstall", HUB_RELEASE, "-n", SYSTEM, "--wait", check=False)


def uninstall_member(lab: Federation, cluster: str) -> None:
    """`helm uninstall` the member chart, then what its agents leave running on purpose: datapath and tunnel."""
    helm(lab, cluster, "uninstall", RELEASE, "-n", SYSTEM, "--wait", check=False)
    for node in lab.nodes(cluster):
        subprocess.run([sys.executable, "-m", "balancing", "datapath", "detach", "--bpffs",
                        str(node.bpffs / "balancing"), "--cgroup", str(node.cgroup)], capture_output=True,
                       timeout=60, check=False)
        subprocess.run([sys.executable, "-m", "balancing", "datapath", "tunnel", "down", "--node", node.name],
                       capture_output=True, timeout=60, check=False,
                       env={**os.environ, "BALANCING_NODE_INDEX_DIR": str(NODE_INDEX_DIR)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--undo", action="store_true", help="remove what the demo added")
    args = parser.parse_args()
    lab = Federation()
    if args.undo:
        undo(lab)
        print("demo removed; the lab is still up")
        return 0
    install(lab)
    seeds = seed_policies(lab)
    failed = cross_cluster(lab)
    seed_failures = [name for name, answer in seeds.items() if "http-redirect" not in answer or "failed" in answer]
    for name in seed_failures:
        print(f"seed example {name} did not answer as expected: {seeds[name]}")
    print("Kept for you to explore. Remove everything with: balancing lab down")
    return 1 if failed or seed_failures else 0


if __name__ == "__main__":
    sys.exit(main())
