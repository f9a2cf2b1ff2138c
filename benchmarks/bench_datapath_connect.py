"""TCP connect rate through a VIP: our cgroup socket LB vs a direct connect, and vs iptables DNAT.

Three network namespaces on veths: a server namespace whose backends 10.88.1.1-10 answer on :8080
(a C accept-and-close loop), a client namespace whose client runs in a cgroup with the socket LB
attached, and a second client namespace with kube-proxy-style iptables NAT rules
(OUTPUT -> KUBE-SERVICES, one `-d VIP --dport` rule per service -> KUBE-SVC-* with `statistic
random` per endpoint -> KUBE-SEP-* DNAT; no masquerade rules). Both load N services x 10 backends;
the measured VIP is service N/2, in the middle of the KUBE-SERVICES chain.

The client is a C loop of socket(), connect(), close() with SO_LINGER 0 (no TIME_WAIT), run for
--seconds per measurement; the modes are interleaved for --rounds rounds and medians compared. Two
rates are reported: connects per second of wall time, and connects per second of the client
process's own CPU time (user + system, which includes the BPF programs and the kernel's TCP work
done in its syscalls); the second is far less disturbed by other load on a shared machine.
"direct" connects to the measured service's 10 backends in turn (the same backends the VIP spreads
over), from the same cgroup, so it pays the programs' cost of a lookup that finds no frontend.
The connect4 program's own cost is read from the kernel's BPF run-time statistics
(kernel.bpf_stats_enabled, switched on for the run): unlike the rates, it is not disturbed by other
load on the machine. Resolution events are not consumed during the run (the ring buffer fills and then drops, as the
`events_dropped` counter shows): a node agent's event reader would cost CPU of its own.

    python -m benchmarks.bench_datapath_connect [--services 1000 10000] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from datapath import cache_root
from datapath.lb import DesiredState, MapReader, SocketLB, attached_links, detach, ensure_object, parse_state
from lab import host

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
        struct rusage usage;
        getrusage(RUSAGE_SELF, &usage);
        double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6;
        cpu += usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
        printf("%ld %ld %.6f %.6f\n", ok, failed, now() - start, cpu);
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
            [*host.netns_prefix(self.ipt_ns), "iptables-restore"],
            input=rules.encode(),
            check=True,
        )
        theirs = time.perf_counter() - started
        return ours, theirs

    def rate(
        self, tool: Path, netns: str, cgroup: Path | None, ips: Sequence[str], port: int, seconds: float
    ) -> tuple[float, float]:
        """(connects per second of wall time, connects per second of the client's own CPU time)."""
        out = subprocess.run(
            [*host.netns_prefix(netns), str(tool), "client", str(seconds), str(port), *ips],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=host.cgroup_joiner(cgroup),
        ).stdout.split()
        ok, failed, elapsed, cpu = int(out[0]), int(out[1]), float(out[2]), float(out[3])
        if failed:
            raise RuntimeError(f"{failed} of {ok + failed} connects to {' '.join(ips)} :{port} failed in {netns}")
        return ok / elapsed, ok / cpu

    def connect4_stats(self) -> tuple[int, int]:
        """(run_time_ns, run_cnt) of the attached connect4 program (kernel.bpf_stats_enabled)."""
        (link,) = [link for link in attached_links(self.bpffs) if link.hook == "connect4"]
        shown = json.loads(host.run(["bpftool", "-j", "prog", "show", "id", str(link.prog_id)]))
        return int(shown.get("run_time_ns", 0)), int(shown.get("run_cnt", 0))

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


class ProgramCost:
    """A measurement that also accumulates the connect4 program's run time while it runs."""

    def __init__(self, bench: Bench, measure: Callable[[], tuple[float, float]]) -> None:
        self.bench, self.measure = bench, measure
        self.run_time_ns = self.runs = 0

    def __call__(self) -> tuple[float, float]:
        time_before, runs_before = self.bench.connect4_stats()
        rate = self.measure()
        time_after, runs_after = self.bench.connect4_stats()
        self.run_time_ns += time_after - time_before
        self.runs += runs_after - runs_before
        return rate

    @property
    def ns_per_run(self) -> float:
        return self.run_time_ns / max(self.runs, 1)


def medians(rounds: int, modes: dict[str, Callable[[], tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Interleave the modes for `rounds` rounds; the median wall rate and CPU rate of each."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, measure in modes.items():
            samples[name].append(measure())
    return {
        name: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        for name, values in samples.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    args = parser.parse_args(argv)

    tool = build_tool()
    bench = Bench()
    stats_switch = Path("/proc/sys/kernel/bpf_stats_enabled")
    stats_before = stats_switch.read_text().strip()
    try:
        stats_switch.write_text("1")
        bench.setup(tool)
        iptables = host.run(["iptables", "-V"]).strip()
        print(f"{iptables}; {os.cpu_count()} CPUs; {args.rounds} rounds of {args.seconds}s each")
        for services in sorted(args.services):
            ours_load, ipt_load = bench.load(services)
            target = vip(services // 2)
            measure = functools.partial(bench.rate, tool, seconds=args.seconds)
            direct = ProgramCost(bench, functools.partial(measure, bench.client_ns, bench.cgroup, BACKENDS, PORT))
            through_vip = ProgramCost(bench, functools.partial(measure, bench.client_ns, bench.cgroup, [target], 80))
            rates = medians(
                args.rounds,
                {
                    "direct": direct,
                    "socket LB VIP": through_vip,
                    "iptables VIP": functools.partial(measure, bench.ipt_ns, None, [target], 80),
                    "iptables direct": functools.partial(measure, bench.ipt_ns, None, BACKENDS, PORT),
                },
            )
            with MapReader(bench.bpffs) as reader:
                dropped = reader.counters()["events_dropped"]
            print(
                f"{services:>6} services x 10 backends: load socket LB {ours_load * 1000:.0f} ms, "
                f"iptables-restore {ipt_load * 1000:.0f} ms"
            )
            print(f"    {'':<15} {'per wall second':>16} {'per client CPU second':>22}")
            for name, (wall, cpu) in rates.items():
                print(f"    {name:<15} {wall:>16.0f} {cpu:>22.0f}")
            ours = rates["socket LB VIP"]
            for theirs, target_note in (("direct", "   target >= 0.95"), ("iptables VIP", "")):
                print(
                    f"    ratio socket LB VIP / {theirs + ':':<14} wall {ours[0] / rates[theirs][0]:.3f}, "
                    f"CPU {ours[1] / rates[theirs][1]:.3f}{target_note}"
                )
            print(
                f"    connect4 program (bpf_stats): {direct.ns_per_run:.0f} ns/run direct, "
                f"{through_vip.ns_per_run:.0f} ns/run VIP"
            )
            print(f"    (events dropped so far, nobody reading: {dropped})")
    finally:
        stats_switch.write_text(stats_before)
        bench.teardown()


if __name__ == "__main__":
    main()
