"""The lab's stand-in for the kubelet's heartbeat: one daemon for the whole lab.

Every HEARTBEAT_INTERVAL it renews each node's Lease, refreshes the node's Ready condition every
NODE_STATUS_INTERVAL, and marks a pod NotReady when its process has died (so its endpoints leave
the EndpointSlices, as they would with a real kubelet).
"""

from __future__ import annotations

import argparse
import logging
import time

from lab import kubeapi
from lab.state import LabState

HEARTBEAT_INTERVAL = 10.0
NODE_STATUS_INTERVAL = 30.0

log = logging.getLogger("lab.kubelet")


def beat(state: LabState, refresh_node_status: bool, pod_readiness: dict[str, bool]) -> None:
    for node in state.nodes.values():
        cluster = state.clusters.get(node.cluster)
        if cluster is None:
            continue
        kubeapi.renew_lease(cluster, node.name)
        if refresh_node_status:
            kubeapi.update_node_status(cluster, node, ready=True)
    for key, pod in state.pods.items():
        pod_cluster = state.clusters.get(pod.cluster)
        pod_node = state.nodes.get(pod.node)
        if pod_cluster is None or pod_node is None or pod.process is None:
            continue
        ready = pod.process.alive()
        if pod_readiness.get(key, True) != ready:
            kubeapi.set_pod_status(pod_cluster, pod, pod_node.underlay_ip, ready=ready)
        pod_readiness[key] = ready


def run_forever() -> None:
    last_status = 0.0
    pod_readiness: dict[str, bool] = {}
    while True:
        started = time.monotonic()
        refresh = started - last_status >= NODE_STATUS_INTERVAL
        try:
            beat(LabState.load(), refresh, pod_readiness)
            if refresh:
                last_status = started
        except Exception:  # keep beating: one failed round must not stop the heartbeat
            log.exception("heartbeat round failed")
        time.sleep(max(0.0, HEARTBEAT_INTERVAL - (time.monotonic() - started)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_forever()


if __name__ == "__main__":
    main()
