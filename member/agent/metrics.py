"""The node agent's Prometheus metrics (prefix `balancing_agent_`), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from member.observability import LATENCY_BUCKETS


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.resolutions = Counter(
            "balancing_agent_resolutions", "connect()/sendmsg() resolutions seen in the kernel's event ring",
            ["tier", "result", "policy"], registry=r,
        )
        self.events_dropped = Gauge(
            "balancing_agent_events_dropped", "Resolution events the kernel dropped because the ring was full",
            registry=r,
        )
        self.frontends = Gauge("balancing_agent_frontends", "Frontends programmed, by tier", ["tier"], registry=r)
        self.backends = Gauge("balancing_agent_backends", "Backend slots programmed", registry=r)
        self.map_fill = Gauge("balancing_agent_map_fill_ratio", "Fill of the socket-LB maps (0-1)", ["map"], registry=r)
        self.syncs = Counter("balancing_agent_syncs", "Datapath syncs, by kind", ["kind"], registry=r)
        self.sync_seconds = Histogram(
            "balancing_agent_sync_duration_seconds", "Time to translate and write one sync", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.map_writes = Counter("balancing_agent_map_writes", "BPF map elements written or deleted", registry=r)
        self.programming_latency = Histogram(
            "balancing_agent_programming_latency_seconds",
            "From a watch event's arrival at the agent to the kernel map write that applies it",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.network_programming = Histogram(
            "balancing_agent_network_programming_duration_seconds",
            "From an EndpointSlice change (endpoints.kubernetes.io/last-change-trigger-time) to the kernel "
            "map write, as kube-proxy's kubeproxy_network_programming_duration_seconds",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.problems = Gauge("balancing_agent_sync_problems", "Sources whose last translation was refused",
                              registry=r)
