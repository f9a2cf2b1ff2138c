"""Member: our node agent against the real kube-proxy (nftables and iptables modes), on one lab node.

Everything talks to member-1's real apiserver and reads the same objects: N selectorless Services
(port 80 -> 8080) with one EndpointSlice each of 10 ready endpoints, plus a `probe` Service whose
slice the benchmark patches. Three implementations are measured one after the other on the same
node, each alone (they would fight: kube-proxy's rules and our socket LB both translate ClusterIPs):
- ours: the member chart installed with `helm upgrade --install` (node agent DaemonSet plus member
  controller), uninstalled afterwards (its pinned socket LB stays on the node's cgroup, where
  nothing of the kube-proxy phases runs);
- kube-proxy built from the pinned k8s.io/kubernetes module (`lab/toolchain.py`), started by this
  script in the node's network namespace with member-1's kubeconfig, `--proxy-mode nftables`, then
  `--proxy-mode iptables` (Debian's iptables-nft); `kube-proxy --cleanup` before and after each.

What is measured, per size, in one run:
- Endpoint change -> dataplane. The probe Service's 10 endpoints flip between a set whose port
  accepts (10.88.1.1-10:8080, a C accept-and-close server in a backends namespace on a veth of the
  node) and a set that refuses (10.88.2.1-10:8081, where nothing listens). Each flip stamps
  `endpoints.kubernetes.io/last-change-trigger-time` with the wall time just before its PATCH; a
  prober on the node connects to the ClusterIP every millisecond and reports the first connect
  with the new outcome. The latency is that moment minus the trigger time: apiserver, watch,
  the implementation's own work, and the kernel, end to end. Flips are spaced by a uniformly random
  0.5-1.5 x --spacing (no phase lock with periodic timers), --changes of them or as many as fit in
  --budget seconds. Beside it, each implementation's own histograms over the same changes: network
  programming (`balancing_agent_network_programming_duration_seconds`,
  `kubeproxy_network_programming_duration_seconds`) as bucket bounds, and its sync duration (mean).
- Connect rate through the ClusterIP and directly to the 10 accepting backends, from the same
  client context (our agent: a process in the node's cgroup; kube-proxy: a process in the node's
  network namespace outside that cgroup), interleaved over --rounds rounds of --seconds; medians;
  and the implementation's own CPU during those runs (our agent reads an event per connect).
  The C client of benchmarks/bench_datapath_connect.py (socket, connect, close with SO_LINGER 0).
- CPU seconds and RSS of the agent's container process (the lab kubelet's runtime record names it)
  and of kube-proxy: CPU from the process's cgroup (`cpu.stat`, so kube-proxy's `nft` and
  `iptables-restore` children count; the process's own utime + stime beside it), RSS (VmRSS, VmHWM)
  from /proc/PID/status; from process start to synced, and per change during the flips.
- Restart to synced: kill -9, then the next process's start to its first full sync (our agent: its
  first "datapath synced" log line, which also gives the map writes that sync made; kube-proxy:
  `kubeproxy_sync_proxy_rules_last_timestamp_seconds`).
An implementation that does not sync within --sync-timeout is reported as such and the run goes on.

    python -m benchmarks.bench_member_vs_kube_proxy [--services 1000 10000] [--changes 50] [--rounds 5]

As root, from the repository root. The lab is brought up (hub + member-1 with one node) when it is
down, and left up; the benchmark's namespace, backends, cgroups and the agent's pins are removed at
the end (--keep-services keeps the Services for another run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.bench_datapath_connect import build_tool, fake_backend
from datapath import process_start_time
from datapath.lb import detach
from lab import federation, host, runtime
from lab.addressing import ClusterAddressing
from lab.state import CGROUP_ROOT, LAB_DIR, NETNS_PREFIX, ClusterRecord, LabState, NodeRecord
from lab.toolchain import tool_path
from member import kube

CLUSTER = "member-1"
NAMESPACE = "bench-kube-proxy"
RELEASE = "balancing-member"
CHART = Path(__file__).resolve().parent.parent / "charts" / "member"
PROBE = "probe"
SERVICE_PORT, TARGET_PORT, REFUSED_PORT = 80, 8080, 8081
ACCEPTING = [f"10.88.1.{i}" for i in range(1, 11)]  # the backends' server listens on TARGET_PORT (any address)
REFUSING = [f"10.88.2.{i}" for i in range(1, 11)]  # ... and nothing on REFUSED_PORT
BACKENDS_NETNS = f"{NETNS_PREFIX}bench-backends"  # the lab's prefix: `lab down` removes it too
NODE_VETH = "bfkpback"
BENCH_CGROUP = CGROUP_ROOT / "bench-member"
AGENT_METRICS_PORT, KUBE_PROXY_METRICS_PORT = 9964, 10249
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Runs on the node (its netns, a chosen cgroup): for each "OUTCOME IP PORT TIMEOUT" line on stdin, connect
# every millisecond until a connect has that outcome (open, refused), then print the wall time (or "timeout").
PROBER = r"""
import socket, struct, sys, time
linger = struct.pack("ii", 1, 0)
for line in sys.stdin:
    want, ip, port, timeout = line.split()
    deadline, seen = time.monotonic() + float(timeout), "timeout"
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.settimeout(1.0)
            try:
                sock.connect((ip, int(port)))
                outcome = "open"
            except ConnectionRefusedError:
                outcome = "refused"
            except OSError:
                outcome = "error"
        if outcome == want:
            seen = repr(time.time())
            break
        time.sleep(0.001)
    print(seen, flush=True)
"""


# --- the API objects ---------------------------------------------------------------------------------


def service_name(index: int) -> str:
    return f"svc-{index:05d}"


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}]}}


def endpoints(addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [{"addresses": [address], "conditions": {"ready": True}} for address in addresses]


def slice_ports(port: int) -> list[dict[str, Any]]:
    return [{"name": "http", "port": port, "protocol": "TCP"}]


def endpoint_slice(name: str, addresses: Sequence[str], namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": slice_ports(TARGET_PORT), "endpoints": endpoints(addresses)}


def services_path() -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/services"


def slices_path(namespace: str = NAMESPACE) -> str:
    return f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


def create(api: kube.Api, path: str, body: dict[str, Any]) -> None:
    try:
        api.request("POST", path, body=body)
    except kube.ApiException as error:
        if error.status != 409:
            raise


def ensure_services(api: kube.Api, count: int) -> float:
    """Exactly Services 0..count-1 and the probe, each with its slice: what is missing is created, the rest
    (from a larger earlier run) deleted. Returns the seconds taken."""
    started = time.perf_counter()
    with contextlib.suppress(kube.ApiException):
        api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    existing = {item["metadata"]["name"] for item in api.request("GET", services_path(), timeout=120)["items"]}
    existing &= {item["metadata"]["name"] for item in api.request("GET", slices_path(), timeout=120)["items"]}
    wanted = {PROBE: ACCEPTING} | {service_name(i): [fake_backend(i, e) for e in range(10)] for i in range(count)}

    def make(name: str) -> None:
        create(api, services_path(), service(name))
        create(api, slices_path(), endpoint_slice(name, wanted[name]))

    def remove(name: str) -> None:
        for path in (services_path(), slices_path()):
            with contextlib.suppress(kube.ApiException):
                api.request("DELETE", f"{path}/{name}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remove, sorted(existing - set(wanted))))
        list(pool.map(make, sorted(set(wanted) - existing)))
    return time.perf_counter() - started


def set_probe_endpoints(api: kube.Api, accepting: bool, namespace: str = NAMESPACE) -> float:
    """Patch the probe's slice to the accepting or the refusing endpoints, stamped with the trigger time; returns
    that time."""
    trigger = time.time()
    stamp = datetime.datetime.fromtimestamp(trigger, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"metadata": {"annotations": {TRIGGER_TIME: stamp}},
            "endpoints": endpoints(ACCEPTING if accepting else REFUSING),
            "ports": slice_ports(TARGET_PORT if accepting else REFUSED_PORT)}
    api.request("PATCH", f"{slices_path(namespace)}/{PROBE}", body=body, content_type="application/merge-patch+json")
    return trigger


# --- the node side: backends, prober, client, processes ----------------------------------------------


def setup_backends(node: NodeRecord, service_cidr: str, tool: Path) -> None:
    """A backends namespace on a veth of the node: its server answers on TARGET_PORT, nothing on REFUSED_PORT."""
    host.netns_add(BACKENDS_NETNS)
    if not host.link_exists(NODE_VETH, node.netns):
        host.run(["ip", "-n", node.netns, "link", "add", NODE_VETH, "type", "veth", "peer", "name", "eth0",
                  "netns", BACKENDS_NETNS])
    host.run(["ip", "-n", node.netns, "addr", "replace", "10.88.0.1/24", "dev", NODE_VETH])
    host.run(["ip", "-n", BACKENDS_NETNS, "addr", "replace", "10.88.0.2/24", "dev", "eth0"])
    for netns, link in ((node.netns, NODE_VETH), (BACKENDS_NETNS, "eth0")):
        host.run(["ip", "-n", netns, "link", "set", link, "up"])
    for address in [*ACCEPTING, *REFUSING]:
        host.run(["ip", "-n", BACKENDS_NETNS, "addr", "replace", f"{address}/32", "dev", "lo"])
    # Routes a real node has through its default route: the backends, and the service CIDR (kube-proxy's
    # DNAT happens after the routing decision of a locally generated packet, so the ClusterIP needs one).
    for destination in ("10.88.1.0/24", "10.88.2.0/24", service_cidr):
        host.run(["ip", "-n", node.netns, "route", "replace", destination, "via", "10.88.0.2"])
    host.ns_run(BACKENDS_NETNS, ["sysctl", "-qw", "net.core.somaxconn=65535"])
    host.spawn([str(tool), "server", str(TARGET_PORT)], netns=BACKENDS_NETNS,
               cgroup=host.cgroup_create(BENCH_CGROUP / "backends"))


def teardown_backends(node: NodeRecord | None) -> None:
    host.cgroup_remove(BENCH_CGROUP)
    host.netns_delete(BACKENDS_NETNS)  # takes the veth, and the node's routes through it, along
    if node is not None and host.link_exists(NODE_VETH, node.netns):
        host.run(["ip", "-n", node.netns, "link", "del", NODE_VETH], check=False)


class Prober:
    """The prober process on the node, in a given cgroup."""

    def __init__(self, node: NodeRecord, cgroup: Path) -> None:
        self.process = subprocess.Popen([*host.netns_prefix(node.netns), sys.executable, "-c", PROBER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        preexec_fn=host.cgroup_joiner(cgroup))

    def ask(self, outcome: str, ip: str, timeout: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{outcome} {ip} {SERVICE_PORT} {timeout}\n")
        self.process.stdin.flush()

    def answer(self) -> float:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        return float(line) if line and line != "timeout" else math.inf

    def wait_for(self, outcome: str, ip: str, timeout: float) -> float:
        self.ask(outcome, ip, timeout)
        return self.answer()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def connect_rate(tool: Path, node: NodeRecord, cgroup: Path, ips: Sequence[str], port: int,
                 seconds: float) -> tuple[float, float]:
    """(connects per wall second, connects per client CPU second) of the C client on the node."""
    out = subprocess.run([*host.netns_prefix(node.netns), str(tool), "client", str(seconds), str(port), *ips],
                         capture_output=True, text=True, check=True, preexec_fn=host.cgroup_joiner(cgroup)).stdout
    ok, failed, elapsed, cpu = out.split()
    if int(failed):
        raise RuntimeError(f"{failed} of {int(ok) + int(failed)} connects to {' '.join(ips)}:{port} failed")
    return int(ok) / float(elapsed), int(ok) / float(cpu)


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float  # of the process's cgroup: kube-proxy's nft and iptables-restore children count
    own_cpu_seconds: float  # of the process alone (utime + stime)
    rss_mib: float
    hwm_mib: float


def usage(pid: int, cgroup: Path) -> ProcessUsage:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    return ProcessUsage(int(stat["usage_usec"]) / 1e6, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                        kib["VmRSS"] / 1024, kib["VmHWM"] / 1024)


def started_at(pid: int) -> float:
    """A process's start as wall time, to the clock tick (its age from /proc/uptime: btime is whole seconds)."""
    ticks = process_start_time(pid)
    if ticks is None:
        raise RuntimeError(f"process {pid} is gone")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - ticks / CLOCK_TICKS)


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), ""
    except OSError:
        return 0, ""


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(sample.labels), float(sample.value)) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def buckets(text: str, histogram: str) -> dict[float, float]:
    totals: dict[float, float] = {}
    for labels, value in samples(text, f"{histogram}_bucket"):
        bound = float(labels["le"])
        totals[bound] = totals.get(bound, 0.0) + value
    return totals


def bucket_percentiles(before: dict[float, float], after: dict[float, float]) -> str:
    """p50 and p99 of what a histogram observed between two scrapes, as the bucket bounds they fall under."""
    delta = sorted((bound, after.get(bound, 0.0) - before.get(bound, 0.0)) for bound in after)
    count = delta[-1][1] if delta else 0.0
    if count <= 0:
        return "no observations"

    def bound(q: float) -> str:
        edge = next(b for b, cumulative in delta if cumulative >= q * count)
        return "> last bucket" if math.isinf(edge) else f"<= {edge * 1000:g} ms"

    return f"p50 {bound(0.5)}, p99 {bound(0.99)} ({count:.0f} obs.)"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def wait_until(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.1) -> None:
    """Poll gently: the times measured come from the implementations' own records, not from this poll."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- one implementation on the node --------------------------------------------------------------------


@dataclass
class Result:
    name: str
    start_to_synced: float = math.nan
    synced: ProcessUsage | None = None
    latencies: list[float] = field(default_factory=list)
    own_histogram: str = ""
    sync_mean: tuple[float, float] = (math.nan, 0.0)  # its own sync duration during the changes: mean s, count
    cpu_per_change: float = math.nan
    after_changes: ProcessUsage | None = None
    vip: tuple[float, float] = (math.nan, math.nan)
    direct: tuple[float, float] = (math.nan, math.nan)
    cpu_share_connects: float = math.nan  # the implementation's CPU seconds per second of the connect runs
    restart_to_synced: float = math.nan
    kill_to_synced: float = math.nan
    restart_cpu: float = math.nan
    restart_rss: float = math.nan
    restart_writes: str = ""
    failure: str = ""


def histogram_mean(before: str, after: str, histogram: str) -> tuple[float, float]:
    """Mean and count of what a histogram observed between two scrapes (IPv4 only where families differ)."""

    def totals(text: str) -> tuple[float, float]:
        def total(suffix: str) -> float:
            return sum(value for labels, value in samples(text, f"{histogram}_{suffix}")
                       if labels.get("ip_family", "IPv4") == "IPv4")

        return total("sum"), total("count")

    (sum_before, count_before), (sum_after, count_after) = totals(before), totals(after)
    count = count_after - count_before
    return ((sum_after - sum_before) / count if count else math.nan), count


class Implementation:
    """Start, measure and stop one Service implementation on the bench node."""

    name = ""
    histogram = ""  # its own network programming histogram
    sync_histogram = ""  # its own sync duration histogram
    restarts_in_place = False  # the restarted process shares the killed one's cgroup (its CPU is a difference)

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    @property
    def metrics_url(self) -> str:
        raise NotImplementedError

    def client_cgroup(self) -> Path:
        raise NotImplementedError

    def cgroup_of(self, pid: int) -> Path:
        raise NotImplementedError

    def start(self) -> tuple[int, float]:
        """Start it in a fresh cgroup; return its pid and the wall time it finished its first full sync."""
        raise NotImplementedError

    def restart(self, killed_pid: int) -> tuple[int, float, str]:
        """After a kill -9: its next process, the wall time of its first sync, and what that sync wrote."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def usage(self, pid: int) -> ProcessUsage:
        return usage(pid, self.cgroup_of(pid))

    def measure(self, changes: int, spacing: float, budget: float, rounds: int, seconds: float) -> Result:
        bench, result = self.bench, Result(self.name)
        prober = Prober(bench.node, self.client_cgroup())
        try:
            spawned = time.time()
            pid, synced = self.start()
            result.start_to_synced = synced - max(spawned, started_at(pid))
            result.synced = self.usage(pid)
            if prober.wait_for("open", bench.vip, 120) == math.inf:
                raise RuntimeError(f"{self.name}: the probe Service's ClusterIP {bench.vip} does not answer")
            self.changes(prober, result, pid, changes, spacing, budget)
            self.connects(result, pid, rounds, seconds)
            before = self.usage(pid)
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            new_pid, resynced, result.restart_writes = self.restart(pid)
            after = self.usage(new_pid)
            result.restart_cpu = after.cpu_seconds - (before.cpu_seconds if self.restarts_in_place else 0.0)
            result.restart_rss = after.rss_mib
            result.restart_to_synced = resynced - started_at(new_pid)
            result.kill_to_synced = resynced - killed
        except (RuntimeError, OSError) as error:  # say what could not be measured, and go on with the others
            result.failure = str(error)
            print(f"    {self.name}: {error}", flush=True)
        finally:
            prober.close()
            self.stop()
        return result

    def changes(self, prober: Prober, result: Result, pid: int, changes: int, spacing: float, budget: float) -> None:
        """Flip the probe's endpoints `changes` times (or until `budget` seconds have passed)."""
        bench = self.bench
        scraped = fetch(self.metrics_url)[1]
        at_start = self.usage(pid)
        accepting, deadline = True, time.monotonic() + budget
        while len(result.latencies) < changes and time.monotonic() < deadline:
            time.sleep(random.uniform(0.5 * spacing, 1.5 * spacing))
            accepting = not accepting
            prober.ask("open" if accepting else "refused", bench.vip, 300)
            trigger = set_probe_endpoints(bench.api, accepting)
            result.latencies.append(prober.answer() - trigger)
        time.sleep(1.0)  # the last observation reaches the histograms
        now = fetch(self.metrics_url)[1]
        result.own_histogram = bucket_percentiles(buckets(scraped, self.histogram), buckets(now, self.histogram))
        result.sync_mean = histogram_mean(scraped, now, self.sync_histogram)
        result.after_changes = self.usage(pid)
        result.cpu_per_change = (result.after_changes.cpu_seconds - at_start.cpu_seconds) / max(
            len(result.latencies), 1)
        if not accepting:
            set_probe_endpoints(bench.api, True)
            prober.wait_for("open", bench.vip, 300)

    def connects(self, result: Result, pid: int, rounds: int, seconds: float) -> None:
        """Connect rates through the ClusterIP and directly, interleaved; medians."""
        bench = self.bench
        rates: dict[str, list[tuple[float, float]]] = {"vip": [], "direct": []}
        cpu_before, started = self.usage(pid).cpu_seconds, time.monotonic()
        for _ in range(rounds):
            rates["vip"].append(connect_rate(bench.tool, bench.node, self.client_cgroup(), [bench.vip],
                                             SERVICE_PORT, seconds))
            rates["direct"].append(connect_rate(bench.tool, bench.node, self.client_cgroup(), ACCEPTING,
                                                TARGET_PORT, seconds))
        result.cpu_share_connects = (self.usage(pid).cpu_seconds - cpu_before) / (time.monotonic() - started)
        result.vip, result.direct = (
            (statistics.median(r[0] for r in rates[k]), statistics.median(r[1] for r in rates[k]))
            for k in ("vip", "direct")
        )


class Agent(Implementation):
    """Our node agent, installed with the member chart."""

    name = "ours (agent)"
    histogram = "balancing_agent_network_programming_duration_seconds"
    sync_histogram = "balancing_agent_sync_duration_seconds"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.bench.node.underlay_ip}:{AGENT_METRICS_PORT}/metrics"

    def client_cgroup(self) -> Path:
        return Path(self.bench.node.cgroup) / "system"  # the node's own processes: the agent's socket LB

    def helm(self, *args: str) -> None:
        env = {**os.environ, "KUBECONFIG": self.bench.cluster.kubeconfig}
        subprocess.run([str(tool_path("helm")), *args], env=env, check=True, capture_output=True, timeout=900)

    def container(self) -> runtime.ContainerRecord | None:
        for sandbox in runtime.all_runtimes():
            if (sandbox.cluster, sandbox.namespace, sandbox.node) == (CLUSTER, federation.PRODUCT_NAMESPACE,
                                                                     self.bench.node.name):
                record = sandbox.containers.get("agent")
                if record is not None and record.alive():
                    return record
        return None

    def cgroup_of(self, pid: int) -> Path:
        record = self.container()
        if record is None or record.pid != pid:
            raise RuntimeError(f"the agent's process {pid} is not running")
        return Path(record.cgroup)  # one per container start

    def synced(self, services: int) -> bool:
        status, _ = fetch(self.metrics_url.replace("/metrics", "/readyz"), timeout=1.0)
        if status != 200:
            return False
        text = fetch(self.metrics_url)[1]
        programmed = sum(value for labels, value in samples(text, "balancing_agent_frontends")
                         if labels.get("tier") == "service")
        return programmed >= services

    @staticmethod
    def first_sync(record: runtime.ContainerRecord) -> dict[str, Any]:
        """The container's first "datapath synced" log line: its full sync, logged right after the writes."""
        with open(record.log) as log:
            for line in log:
                if line.startswith("{") and '"datapath synced"' in line:
                    entry: dict[str, Any] = json.loads(line)
                    return entry
        return {}

    def wait_synced(self, old_pid: int | None) -> tuple[runtime.ContainerRecord, dict[str, Any]]:
        wait_until(lambda: (record := self.container()) is not None and record.pid != old_pid
                   and bool(self.first_sync(record)) and self.synced(self.bench.services), "the agent synced",
                   self.bench.sync_timeout, interval=0.25)
        record = self.container()
        assert record is not None
        return record, self.first_sync(record)

    @staticmethod
    def logged_at(entry: dict[str, Any]) -> float:
        return datetime.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()

    def start(self) -> tuple[int, float]:
        self.helm("upgrade", "--install", RELEASE, str(CHART), "-n", federation.PRODUCT_NAMESPACE,
                  "--set", f"clusterName={CLUSTER}", "--wait", "--timeout", "900s")
        record, first = self.wait_synced(None)
        return record.pid, self.logged_at(first)

    def restart(self, killed_pid: int) -> tuple[int, float, str]:
        record, first = self.wait_synced(killed_pid)
        writes = (f"{first.get('mapWrites')} map writes (frontends {first.get('frontends')}, collected "
                  f"{first.get('collected')}), its sync took {first.get('ms')} ms")
        return record.pid, self.logged_at(first), writes

    def stop(self) -> None:
        self.helm("uninstall", RELEASE, "-n", federation.PRODUCT_NAMESPACE, "--wait", "--timeout", "300s")
        wait_until(lambda: self.container() is None, "the agent gone", 120)


class KubeProxy(Implementation):
    """kube-proxy of the pinned release, run by this script in the node's network namespace."""

    histogram = "kubeproxy_network_programming_duration_seconds"
    sync_histogram = "kubeproxy_sync_proxy_rules_duration_seconds"
    restarts_in_place = True

    def __init__(self, bench: Bench, mode: str) -> None:
        super().__init__(bench)
        self.mode = mode
        self.name = f"kube-proxy {mode}"
        self.process: subprocess.Popen[bytes] | None = None
        self.cgroup = BENCH_CGROUP / f"kube-proxy-{mode}"
        self.tables_before = self.tables()

    @property
    def metrics_url(self) -> str:
        return f"http://{self.bench.node.underlay_ip}:{KUBE_PROXY_METRICS_PORT}/metrics"

    def client_cgroup(self) -> Path:
        return host.cgroup_create(BENCH_CGROUP / "client")  # outside the node's cgroup: no socket LB

    def cgroup_of(self, pid: int) -> Path:
        return self.cgroup  # with its nft / iptables-restore children

    def tables(self) -> set[str]:
        listed = host.ns_run(self.bench.node.netns, ["nft", "list", "tables"], check=False)
        return {line.removeprefix("table ").strip() for line in listed.splitlines() if line.startswith("table ")}

    def cleanup(self) -> None:
        """kube-proxy's own --cleanup; then the tables iptables-nft made for it, which --cleanup leaves empty
        (their base chains would keep conntrack and netfilter hooks busy in the node for the next measurement)."""
        host.ns_run(self.bench.node.netns, [str(tool_path("kube-proxy")), "--cleanup", "--v=0"], check=False)
        for table in self.tables() - self.tables_before:
            host.ns_run(self.bench.node.netns, ["nft", "delete", "table", *table.split()], check=False)

    def last_sync(self) -> float:
        return max((value for labels, value in samples(fetch(self.metrics_url, 1.0)[1],
                                                       "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
                    if labels.get("ip_family") == "IPv4"), default=0.0)

    def spawn(self) -> int:
        node = self.bench.node
        argv = [str(tool_path("kube-proxy")), "--kubeconfig", self.bench.cluster.kubeconfig,
                "--proxy-mode", self.mode, "--hostname-override", node.name, "--conntrack-max-per-core", "0",
                "--metrics-bind-address", f"{node.underlay_ip}:{KUBE_PROXY_METRICS_PORT}",
                "--healthz-bind-address", f"{node.underlay_ip}:10256", "--v=1"]
        self.process = host.spawn(argv, netns=node.netns, cgroup=host.cgroup_create(self.cgroup),
                                  log=LAB_DIR / f"bench-kube-proxy-{self.mode}.log")
        wait_until(lambda: self.last_sync() > 0, f"{self.name}'s first sync", self.bench.sync_timeout,
                   interval=0.25)
        return self.process.pid

    def start(self) -> tuple[int, float]:
        self.cleanup()
        host.cgroup_remove(self.cgroup)
        pid = self.spawn()
        return pid, self.last_sync()

    def restart(self, killed_pid: int) -> tuple[int, float, str]:
        if self.process is not None:
            self.process.wait()
        pid = self.spawn()
        return pid, self.last_sync(), "full sync (kube-proxy rewrites all its rules at start)"

    def stop(self) -> None:
        if self.process is not None:
            host.kill_pid(self.process.pid)
            self.process.wait()
            self.process = None
        host.cgroup_remove(self.cgroup)
        self.cleanup()


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class Bench:
    api: kube.Api
    cluster: ClusterRecord
    node: NodeRecord
    tool: Path
    sync_timeout: float
    vip: str = ""
    services: int = 0


def bench_node() -> tuple[ClusterRecord, NodeRecord]:
    state = LabState.load()
    nodes = sorted(name for name, record in state.nodes.items() if record.cluster == CLUSTER)
    return state.clusters[CLUSTER], state.nodes[nodes[0]]


@contextlib.contextmanager
def conntrack_close_timeout(node: NodeRecord, seconds: int) -> Iterator[None]:
    """Closed (RST) connections leave the conntrack table after `seconds` during the connect loops."""
    key = "net.netfilter.nf_conntrack_tcp_timeout_close"
    old = host.ns_run(node.netns, ["sysctl", "-n", key], check=False).strip()
    host.ns_run(node.netns, ["sysctl", "-qw", f"{key}={seconds}"], check=False)
    try:
        yield
    finally:
        if old:
            host.ns_run(node.netns, ["sysctl", "-qw", f"{key}={old}"], check=False)


def ms(value: float) -> str:
    return "timeout" if math.isinf(value) else f"{value * 1000:.0f}"


def report(services: int, results: Sequence[Result], changes: int) -> None:
    width = 24
    print(f"\n{services} Services x 10 endpoints (+ the probe), {changes} endpoint changes each")
    print(f"{'':<38}" + "".join(f"{r.name:>{width}}" for r in results))

    def row(label: str, cell: Callable[[Result], str]) -> None:
        def shown(result: Result) -> str:
            try:
                text = cell(result)
            except (ValueError, ZeroDivisionError, TypeError, AttributeError, IndexError):  # not measured
                return "-"
            return "-" if "nan" in text else text

        print(f"{label:<38}" + "".join(f"{shown(r):>{width}}" for r in results))

    row("change -> dataplane p50 (ms)", lambda r: ms(percentile(r.latencies, 0.5)))
    row("change -> dataplane p99 (ms)", lambda r: ms(percentile(r.latencies, 0.99)))
    row("change -> dataplane max (ms)", lambda r: ms(max(r.latencies)))
    row("changes measured / not seen in 300 s", lambda r: f"{len(r.latencies)} / "
        f"{sum(math.isinf(v) for v in r.latencies)}")
    row("its own sync, mean ms (syncs)", lambda r: f"{r.sync_mean[0] * 1000:.0f} ({r.sync_mean[1]:.0f})")
    row("start -> synced (s)", lambda r: f"{r.start_to_synced:.2f}")
    row("CPU s, start -> synced (own process)", lambda r: f"{r.synced.cpu_seconds:.2f} "
        f"({r.synced.own_cpu_seconds:.2f})" if r.synced else "-")
    row("CPU ms per change", lambda r: f"{r.cpu_per_change * 1000:.1f}")
    row("RSS MiB synced / after changes", lambda r: f"{r.synced.rss_mib:.0f} / {r.after_changes.rss_mib:.0f}"
        if r.synced and r.after_changes else "-")
    row("peak RSS (VmHWM) MiB", lambda r: f"{r.after_changes.hwm_mib:.0f}" if r.after_changes else "-")
    row("connects/s via ClusterIP (wall)", lambda r: f"{r.vip[0]:.0f}")
    row("connects/s direct (wall)", lambda r: f"{r.direct[0]:.0f}")
    row("ClusterIP / direct (wall, CPU)", lambda r: f"{r.vip[0] / r.direct[0]:.3f}, {r.vip[1] / r.direct[1]:.3f}")
    row("its CPU during the connect runs (%)", lambda r: f"{r.cpu_share_connects * 100:.0f}")
    row("restart: start -> synced (s)", lambda r: f"{r.restart_to_synced:.2f}")
    row("restart: kill -9 -> synced (s)", lambda r: f"{r.kill_to_synced:.2f}")
    row("restart: CPU s / RSS MiB at synced", lambda r: f"{r.restart_cpu:.2f} / {r.restart_rss:.0f}")
    for r in results:
        print(f"  {r.name}: own histogram {r.own_histogram or '-'}; restart writes: {r.restart_writes or '-'}"
              + (f"; FAILED: {r.failure}" if r.failure else ""))
    ours = results[0]
    for theirs in results[1:] if ours.name == Agent.name and ours.latencies else []:
        if not theirs.latencies:
            continue
        p50, p99 = (percentile(theirs.latencies, q) / percentile(ours.latencies, q) for q in (0.5, 0.99))
        print(f"  {theirs.name} / ours: change -> dataplane p50 {p50:.1f}x, p99 {p99:.1f}x; "
              f"connects/s via ClusterIP {theirs.vip[0] / ours.vip[0]:.2f}x")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--changes", type=int, default=50, help="endpoint changes per implementation and size")
    parser.add_argument("--spacing", type=float, default=1.0, help="mean seconds between changes")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds of changes at most per implementation and size (fewer changes when slow)")
    parser.add_argument("--rounds", type=int, default=5, help="connect-rate rounds (ClusterIP, direct)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one connect-rate measurement")
    parser.add_argument("--only", nargs="+", choices=["ours", "nftables", "iptables"],
                        default=["ours", "nftables", "iptables"])
    parser.add_argument("--sync-timeout", type=float, default=900.0,
                        help="seconds an implementation may take to its first sync before it is reported as not synced")
    parser.add_argument("--keep-services", action="store_true", help="leave the Services for another run")
    args = parser.parse_args(argv)

    if LabState.load().clusters.get(CLUSTER) is None:
        federation.up(1, 1)
    cluster, node = bench_node()
    bench = Bench(kube.Api(kube.api_client(cluster.kubeconfig)), cluster, node, build_tool(), args.sync_timeout)
    service_cidr = str(ClusterAddressing(CLUSTER).service_cidr)
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; kernel "
          f"{os.uname().release}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    nodes = sum(record.cluster == CLUSTER for record in LabState.load().nodes.values())
    print(f"node {node.name} of {CLUSTER} ({nodes} node(s): one agent each); kube-proxy "
          f"{host.run([str(tool_path('kube-proxy')), '--version']).strip()}; {host.run(['iptables', '-V']).strip()}")
    try:
        setup_backends(node, service_cidr, bench.tool)
        with conntrack_close_timeout(node, 1):
            for services in sorted(args.services):
                took = ensure_services(bench.api, services)
                bench.services = services
                bench.vip = bench.api.request("GET", f"{services_path()}/{PROBE}")["spec"]["clusterIP"]
                set_probe_endpoints(bench.api, True)
                print(f"\n{services} Services ready in the apiserver ({took:.0f} s to create or delete what differed)")
                implementations: list[Implementation] = []
                if "ours" in args.only:
                    implementations.append(Agent(bench))
                implementations += [KubeProxy(bench, mode) for mode in ("nftables", "iptables") if mode in args.only]
                results = []
                for implementation in implementations:
                    print(f"  measuring {implementation.name} (load average {os.getloadavg()[0]:.2f})", flush=True)
                    result = implementation.measure(args.changes, args.spacing, args.budget, args.rounds, args.seconds)
                    print(f"    {json.dumps(dataclasses.asdict(result), default=str)}", flush=True)
                    results.append(result)
                report(services, results, args.changes)
    finally:
        teardown_backends(node)
        detach(Path(node.bpffs) / "balancing", Path(node.cgroup))  # what the uninstalled agent left pinned
        if not args.keep_services:
            subprocess.run([str(tool_path("kubectl")), "delete", "namespace", NAMESPACE, "--timeout=600s"],
                           env={**os.environ, "KUBECONFIG": cluster.kubeconfig}, capture_output=True)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
