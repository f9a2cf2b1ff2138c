"""Throughput and RTT through the WireGuard tunnel vs the plain underlay, measured side by side.

Two node namespaces joined by a veth (the underlay). The tunnel between them is brought up with the
real tunnel manager (kernel WireGuard if the kernel has it, else wireguard-go). iperf3 and ping then run
from node A to node B twice: to B's underlay address (plain) and to B's proxy IP (through the tunnel).

    python -m benchmarks.bench_tunnel_throughput [--seconds 5] [--pings 500]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from datapath.tunnel import KeyStore, TunnelManager, TunnelNode, wireguard_go_binary
from lab import host

UNDERLAY = ("172.31.255.1", "172.31.255.2")
PROXY = ("100.96.255.1", "100.96.255.2")


def in_netns(netns: str, argv: list[str], timeout: float = 120) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout


def iperf3_gbits(client: str, server: str, target: str, seconds: int) -> float:
    """One iperf3 TCP run from `client` to a one-off server on `target`; retried while the server starts."""
    last_error = ""
    for _attempt in range(20):
        daemon = host.spawn(["iperf3", "-s", "-1", "-B", target], netns=server)
        try:
            time.sleep(0.2)
            argv = ["nsenter", f"--net=/run/netns/{client}", "--", "iperf3", "-c", target, "-t", str(seconds), "-J"]
            run = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
            try:
                report = json.loads(run.stdout)
            except ValueError:
                report = {}
            summary = report.get("end", {}).get("sum_received")
            if run.returncode == 0 and summary:
                return float(summary["bits_per_second"]) / 1e9
            last_error = report.get("error") or run.stderr.strip() or "no summary"
        finally:
            host.kill_pid(daemon.pid)
            daemon.wait(timeout=10)
    raise RuntimeError(f"iperf3 to {target} failed: {last_error}")


def ping_rtt_ms(client: str, target: str, count: int) -> tuple[float, float]:
    """(average, mdev) RTT in ms of `count` pings at 5 ms intervals."""
    out = in_netns(client, ["ping", "-n", "-q", "-c", str(count), "-i", "0.005", target])
    match = re.search(r"= [\d.]+/([\d.]+)/[\d.]+/([\d.]+) ms", out)
    if not match:
        raise RuntimeError(f"no RTT in ping output: {out}")
    return float(match.group(1)), float(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per run")
    parser.add_argument("--pings", type=int, default=500, help="pings per RTT measurement")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:5]
    netns = (f"bfbA{tag}", f"bfbB{tag}")
    base = Path(tempfile.mkdtemp(prefix="bf-bench-tunnel-"))
    try:
        for name in netns:
            host.netns_add(name)
        host.run(["ip", "link", "add", f"bfbv{tag}", "type", "veth", "peer", "name", "eth0", "netns", netns[1]])
        host.run(["ip", "link", "set", f"bfbv{tag}", "netns", netns[0], "name", "eth0"])
        for name, address in zip(netns, UNDERLAY, strict=True):
            host.run(["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0"])
            host.run(["ip", "-n", name, "link", "set", "eth0", "up"])

        nodes = [TunnelNode(name=f"bench-{i}", netns=ns, state_dir=base / ns) for i, ns in enumerate(netns)]
        keys = [KeyStore(node.tunnel_dir).ensure() for node in nodes]
        implementation = ""
        for me in (0, 1):
            other = 1 - me
            manager = TunnelManager(nodes[me])
            state = manager.parse(
                {
                    "proxyIPv4": PROXY[me],
                    "peers": [
                        {
                            "node": nodes[other].name,
                            "publicKey": keys[other],
                            "endpoint": f"{UNDERLAY[other]}:51820",
                            "allowedIPs": [f"{PROXY[other]}/32"],
                        }
                    ],
                }
            )
            manager.apply(state)
            implementation = manager.status().implementation or ""
        in_netns(netns[0], ["ping", "-c", "3", "-i", "0.1", PROXY[1]])  # handshake before measuring

        plain_gbits = iperf3_gbits(netns[0], netns[1], UNDERLAY[1], args.seconds)
        tunnel_gbits = iperf3_gbits(netns[0], netns[1], PROXY[1], args.seconds)
        plain_rtt, plain_mdev = ping_rtt_ms(netns[0], UNDERLAY[1], args.pings)
        tunnel_rtt, tunnel_mdev = ping_rtt_ms(netns[0], PROXY[1], args.pings)

        binary = wireguard_go_binary() if implementation == "userspace" else "kernel"
        print(f"implementation: {implementation} ({binary})")
        print(
            f"throughput  underlay {plain_gbits:7.2f} Gbit/s   tunnel {tunnel_gbits:7.2f} Gbit/s   "
            f"tunnel/underlay {tunnel_gbits / plain_gbits:.3f}"
        )
        print(
            f"RTT (avg)   underlay {plain_rtt:7.3f} ms       tunnel {tunnel_rtt:7.3f} ms       "
            f"tunnel/underlay {tunnel_rtt / plain_rtt:.2f}   (mdev {plain_mdev:.3f} / {tunnel_mdev:.3f} ms)"
        )
    finally:
        for node in (TunnelNode(name=f"bench-{i}", netns=ns, state_dir=base / ns) for i, ns in enumerate(netns)):
            if host.netns_exists(node.netns or ""):
                TunnelManager(node).down()
        for name in netns:
            host.netns_delete(name)
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
