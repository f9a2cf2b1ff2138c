"""TCP connect rate through a VIP: our cgroup socket LB vs a direct connect, and vs iptables DNAT.

Three network namespaces on veths: a server namespace whose backends 10.88.1.1-10 answer on :8080
(a C accept-and-close loop), a client namespace whose client runs in a cgroup with the socket LB
attached, and a second client namespace with kube-proxy-style iptables NAT rules
(OUTPUT -> KUBE-SERVICES, one `-d VIP --dport` rule per service -> KUBE-SVC-* with `statistic
random` per endpoint -> KUBE-SEP-* DNAT; no masquerade rules). Both load N services x 10 backends;
the measured VIP is service N/2, in the middle of the KUBE-SERVICES chain.

The client is a C loop of socket(), connect(), close() with SO_LINGER 0 (no TIME_WAIT), run for
--seconds per measurement; the modes are interleaved for --rounds rounds and medians compared.
"direct" connects to the measured service's 10 backends in turn (the same backends the VIP spreads
over), from the same cgroup, so it pays the programs' cost of a lookup that finds no frontend.
Resolution events are not consumed during the run (the ring buffer fills and then drops, as the
`events_dropped` counter shows): a node agent's event reader would cost CPU of its own.

    python -m benchmarks.bench_datapath_connect [--services 1000 10000] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from datapath.build import cache_root, ensure_object
from datapath.lb.maps import LbMaps
from datapath.lb.node import SocketLB, detach
from datapath.lb.state import DesiredState, parse_state
from lab import host

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "server") == 0) {
        int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&any, sizeof any) || listen(fd, 65535)) { perror("listen"); return 1; }
        for (;;) { int c = accept(fd, NULL, NULL); if (c >= 0) close(c); }
    }
    if (argc >= 5 && strcmp(argv[1], "client") == 0) {
        /* client SECONDS PORT IP [IP...]: connect to the IPs in turn */
        struct sockaddr_in to[64];
        struct linger abort_close = {1, 0};
        int targets = argc - 4 > 64 ? 64 : argc - 4;
        long ok = 0, failed = 0, n = 0;
        double start = now(), end = start + atof(argv[2]);
        for (int t = 0; t < targets; t++) {
            memset(&to[t], 0, sizeof to[t]);
            to[t].sin_family = AF_INET;
            to[t].sin_port = htons(atoi(argv[3]));
            inet_pton(AF_INET, argv[4 + t], &to[t].sin_addr);
        }
        while (now() < end) {
            for (int i = 0; i < 32; i++, n++) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                setsockopt(s, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
                if (connect(s, (struct sockaddr *)&to[n % targets], sizeof to[n % targets]) == 0) ok++; else failed++;
                close(s);
            }
        }
        printf("%ld %ld %.6f\n", ok, failed, now() - start);
        return 0;
    }
    fprintf(stderr, "usage: server PORT | client SECONDS PORT IP [IP...]\n");
    return 2;
}
"""

BACKENDS = [f"10.88.1.{i}" for i in range(1, 11)]
PORT = 8080


def build_tool() -> Path:
    digest = hashlib.sha256(C_SOURCE.encode()).hexdigest()[:12]
    tool = cache_root() / "bench" / f"bf_connect_bench-{digest}"
    if not tool.exists():
        tool.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as source:
            source.write(C_SOURCE)
        subprocess.run(["clang", "-O2", "-o", f"{tool}.tmp", source.name], check=True)
        os.unlink(source.name)
        os.rename(f"{tool}.tmp", tool)
    return tool


def vip(index: int) -> str:
    return f"10.{96 + index // 65536}.{index // 256 % 256}.{index % 256}"


def fake_backend(service: int, endpoint: int) -> str:
    index = service * 10 + endpoint
    return f"10.{128 + index // 65536}.{index // 256 % 256}.{index % 256}"


def backends_of(service: int, measured: int) -> list[str]:
    return BACKENDS if service == measured else [fake_backend(service, e) for e in range(10)]


def socket_lb_state(services: int) -> DesiredState:
    measured = services // 2
    return parse_state(
        {
            "tiers": {
                "service": [
                    {
                        "ip": vip(i),
                        "port": 80,
                        "protocol": "TCP",
                        "backends": [{"ip": b, "port": PORT} for b in backends_of(i, measured)],
                    }
                    for i in range(services)
                ]
            }
        }
    )


def iptables_rules(services: int) -> str:
    measured = services // 2
    chains, rules = [":KUBE-SERVICES - [0:0]"], ["-A OUTPUT -j KUBE-SERVICES"]
    for i in range(services):
        chains.append(f":KUBE-SVC-{i} - [0:0]")
        rules.append(f"-A KUBE-SERVICES -d {vip(i)}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{i}")
        endpoints = backends_of(i, measured)
        for e, backend in enumerate(endpoints):
            chains.append(f":KUBE-SEP-{i}-{e} - [0:0]")
            remaining = len(endpoints) - e
            chance = f"-m statistic --mode random --probability {1 / remaining:.11f} " if remaining > 1 else ""
            rules.append(f"-A KUBE-SVC-{i} {chance}-j KUBE-SEP-{i}-{e}")
            rules.append(f"-A KUBE-SEP-{i}-{e} -p tcp -m tcp -j DNAT --to-destination {backend}:{PORT}")
    return "\n".join(["*nat", *chains, *rules, "COMMIT", ""])


class Bench:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:5]
        self.server_ns, self.client_ns, self.ipt_ns = f"bfbs{tag}", f"bfbc{tag}", f"bfbi{tag}"
        self.cgroup = host.CGROUP2_ROOT / f"bfbench{tag}"
        self.bpffs = host.BPFFS_ROOT / f"bfbench{tag}"
        self.tag = tag
        self.server: subprocess.Popen[bytes] | None = None
        self.lb: SocketLB | None = None

    def setup(self, tool: Path) -> None:
        host.ensure_bpffs()
        for ns in (self.server_ns, self.client_ns, self.ipt_ns):
            host.netns_add(ns)
        for number, (client, subnet) in enumerate(((self.client_ns, "10.88.0"), (self.ipt_ns, "10.89.0"))):
            outer, inner = f"bfv{self.tag}{number}a", f"bfv{self.tag}{number}b"
            host.run(
                [
                    "ip",
                    "link",
                    "add",
                    outer,
                    "netns",
                    client,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    inner,
                    "netns",
                    self.server_ns,
                ]
            )
            host.run(["ip", "-n", client, "addr", "add", f"{subnet}.1/24", "dev", outer])
            host.run(["ip", "-n", self.server_ns, "addr", "add", f"{subnet}.2/24", "dev", inner])
            host.run(["ip", "-n", client, "link", "set", outer, "up"])
            host.run(["ip", "-n", self.server_ns, "link", "set", inner, "up"])
            host.run(["ip", "-n", client, "route", "add", "10.88.1.0/24", "via", f"{subnet}.2"])
            # A node has a default route: locally generated packets are routed before NAT runs.
            host.run(["ip", "-n", client, "route", "add", "default", "via", f"{subnet}.2"])
        for backend in BACKENDS:
            host.run(["ip", "-n", self.server_ns, "addr", "add", f"{backend}/32", "dev", "lo"])
        host.ns_run(self.server_ns, ["sysctl", "-qw", "net.core.somaxconn=65535"])
        host.ns_run(self.ipt_ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_close=1"], check=False)
        self.server = host.spawn([str(tool), "server", str(PORT)], netns=self.server_ns)
        host.cgroup_create(self.cgroup)
        self.lb = SocketLB(self.bpffs, self.cgroup, ensure_object())

    def load(self, services: int) -> tuple[float, float]:
        """Load N services into both; return (socket LB seconds, iptables-restore seconds)."""
        assert self.lb is not None
        state = socket_lb_state(services)
        started = time.perf_counter()
        self.lb.apply(state)
        ours = time.perf_counter() - started
        rules = iptables_rules(services)
        started = time.perf_counter()
        subprocess.run(
            ["nsenter", f"--net={host.NETNS_DIR / self.ipt_ns}", "--", "iptables-restore"],
            input=rules.encode(),
            check=True,
        )
        theirs = time.perf_counter() - started
        return ours, theirs

    def rate(self, tool: Path, netns: str, cgroup: Path | None, ips: Sequence[str], port: int, seconds: float) -> float:
        procs = str(cgroup / "cgroup.procs") if cgroup else None

        def join() -> None:
            if procs:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))

        out = subprocess.run(
            ["nsenter", f"--net={host.NETNS_DIR / netns}", "--", str(tool), "client", str(seconds), str(port), *ips],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=join,
        ).stdout.split()
        ok, failed, elapsed = int(out[0]), int(out[1]), float(out[2])
        if failed:
            raise RuntimeError(f"{failed} of {ok + failed} connects to {' '.join(ips)} :{port} failed in {netns}")
        return ok / elapsed

    def teardown(self) -> None:
        if self.lb is not None:
            self.lb.close()
        if self.cgroup.exists():
            detach(self.bpffs, self.cgroup)
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        for ns in (self.client_ns, self.ipt_ns, self.server_ns):
            host.netns_delete(ns)
        host.cgroup_remove(self.cgroup)


def medians(rounds: int, modes: dict[str, Callable[[], float]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, measure in modes.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    args = parser.parse_args(argv)

    tool = build_tool()
    bench = Bench()
    try:
        bench.setup(tool)
        iptables = host.run(["iptables", "-V"]).strip()
        print(f"{iptables}; {os.cpu_count()} CPUs; {args.rounds} rounds of {args.seconds}s each")
        for services in sorted(args.services):
            ours_load, ipt_load = bench.load(services)
            target = vip(services // 2)
            measure = functools.partial(bench.rate, tool, seconds=args.seconds)
            rates = medians(
                args.rounds,
                {
                    "direct": functools.partial(measure, bench.client_ns, bench.cgroup, BACKENDS, PORT),
                    "socket LB VIP": functools.partial(measure, bench.client_ns, bench.cgroup, [target], 80),
                    "iptables VIP": functools.partial(measure, bench.ipt_ns, None, [target], 80),
                    "iptables direct": functools.partial(measure, bench.ipt_ns, None, BACKENDS, PORT),
                },
            )
            with LbMaps(bench.bpffs) as maps:
                dropped = maps.read_stats()["events_dropped"]
            print(
                f"{services:>6} services x 10 backends: load socket LB {ours_load * 1000:.0f} ms, "
                f"iptables-restore {ipt_load * 1000:.0f} ms"
            )
            for name, value in rates.items():
                print(f"    {name:<14} {value:>9.0f} connects/s")
            versus_direct = rates["socket LB VIP"] / rates["direct"]
            print(f"    ratio socket LB VIP / direct:       {versus_direct:.3f}   target >= 0.95")
            print(f"    ratio socket LB VIP / iptables VIP: {rates['socket LB VIP'] / rates['iptables VIP']:.3f}")
            print(f"    (events dropped so far, nobody reading: {dropped})")
    finally:
        bench.teardown()


if __name__ == "__main__":
    main()
