"""The hub operator's settings, read once from the environment (the hub chart sets them)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from crds import DEFAULT_CATALOGUE_NAMESPACE
from hub.mesh import DEFAULT_KEEPALIVE_SECONDS

DEFAULT_CLUSTERSET_IP_POOL = ipaddress.IPv4Network("10.255.0.0/16")
DEFAULT_PROXY_IP_POOL = ipaddress.IPv4Network("100.96.0.0/16")
DEFAULT_BATCH_WINDOW = 0.1  # seconds to gather changes before one reconcile
DEFAULT_RESYNC_PERIOD = 300.0  # seconds between full reconciles (a safety net; changes are incremental)
DEFAULT_METRICS_ADDRESS = "0.0.0.0:9966"


class SettingsError(ValueError):
    user_facing = True


@dataclass(frozen=True)
class HubSettings:
    catalogue_namespace: str = DEFAULT_CATALOGUE_NAMESPACE
    clusterset_ip_pool: ipaddress.IPv4Network = DEFAULT_CLUSTERSET_IP_POOL
    proxy_ip_pool: ipaddress.IPv4Network = DEFAULT_PROXY_IP_POOL
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS
    batch_window: float = DEFAULT_BATCH_WINDOW
    resync_period: float = DEFAULT_RESYNC_PERIOD
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    # Namespace patterns (globs) to watch; empty: the whole cluster. One hub watches everything; this
    # lets a test (or a second, separate federation) run its own hub on a shared apiserver.
    watch_namespaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.clusterset_ip_pool.overlaps(self.proxy_ip_pool):
            raise SettingsError(
                f"the clusterset IP pool {self.clusterset_ip_pool} overlaps the proxy IP pool {self.proxy_ip_pool}:"
                " give them disjoint ranges"
            )

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> HubSettings:
        def pool(name: str, default: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
            text = env.get(name)
            if not text:
                return default
            try:
                return ipaddress.IPv4Network(text, strict=True)
            except ValueError as error:
                raise SettingsError(f"{name}={text!r} is not an IPv4 CIDR such as 10.255.0.0/16: {error}") from None

        def number(name: str, default: float, minimum: float) -> float:
            text = env.get(name)
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise SettingsError(f"{name}={text!r} is not a number of seconds") from None
            if value < minimum:
                raise SettingsError(f"{name}={text!r} must be at least {minimum}")
            return value

        return cls(
            catalogue_namespace=env.get("BALANCING_CATALOGUE_NAMESPACE") or DEFAULT_CATALOGUE_NAMESPACE,
            clusterset_ip_pool=pool("BALANCING_CLUSTERSET_IP_POOL", DEFAULT_CLUSTERSET_IP_POOL),
            proxy_ip_pool=pool("BALANCING_PROXY_IP_POOL", DEFAULT_PROXY_IP_POOL),
            batch_window=number("BALANCING_BATCH_WINDOW", DEFAULT_BATCH_WINDOW, 0.0),
            resync_period=number("BALANCING_RESYNC_PERIOD", DEFAULT_RESYNC_PERIOD, 1.0),
            metrics_address=env.get("BALANCING_METRICS_ADDRESS", DEFAULT_METRICS_ADDRESS),
            watch_namespaces=tuple(
                pattern.strip() for pattern in env.get("BALANCING_WATCH_NAMESPACES", "").split(",") if pattern.strip()
            ),
        )
