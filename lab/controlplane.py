"""Real Kubernetes control planes for the lab: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Each cluster gets its own ports (lab/addressing.py), its own etcd data dir and certificates signed by
one lab CA, and an admin kubeconfig. Processes run in the cgroup `balancing-lab/control-plane/<cluster>`
so that `lab down` finds every one of them even without the state file.
"""

from __future__ import annotations

import concurrent.futures
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from lab import host, pki
from lab.addressing import HOST_UNDERLAY_IP, ClusterAddressing
from lab.state import CGROUP_ROOT, LAB_DIR, ClusterRecord, ProcessRecord
from lab.toolchain import tool_path

READY_TIMEOUT = 120.0


def cluster_dir(cluster: str) -> Path:
    return LAB_DIR / "clusters" / cluster


def control_plane_cgroup(cluster: str) -> Path:
    return CGROUP_ROOT / "control-plane" / cluster


def kubeconfig_path(cluster: str) -> Path:
    return cluster_dir(cluster) / "kubeconfig"


def apiserver_url(cluster: str) -> str:
    return f"https://{HOST_UNDERLAY_IP}:{ClusterAddressing(cluster).apiserver_port}"


def _write_kubeconfig(cluster: str, ca: Path, cert: Path, key: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": apiserver_url(cluster), "certificate-authority": str(ca)}}
        ],
        "users": [{"name": f"{cluster}-admin", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin"}}],
        "current-context": cluster,
    }
    path = kubeconfig_path(cluster)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _prepare(cluster: str) -> dict[str, Path]:
    directory = cluster_dir(cluster)
    pki_dir = directory / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = pki.ensure_ca(LAB_DIR / "pki")
    addressing = ClusterAddressing(cluster)
    kubernetes_service_ip = str(next(addressing.service_cidr.hosts()))
    serving = pki.ensure_signed(
        pki_dir, "apiserver", ca, subject=f"/CN={cluster}-apiserver",
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"],
        ip_addresses=[str(HOST_UNDERLAY_IP), "127.0.0.1", kubernetes_service_ip],
    )
    admin = pki.ensure_signed(pki_dir, "admin", ca, subject="/O=system:masters/CN=lab-admin", client=True)
    sa_private, sa_public = pki.ensure_service_account_key(pki_dir)
    kubeconfig = _write_kubeconfig(cluster, ca[0], admin[0], admin[1])
    return {
        "ca": ca[0], "ca_key": ca[1], "serving_cert": serving[0], "serving_key": serving[1],
        "sa_private": sa_private, "sa_public": sa_public, "kubeconfig": kubeconfig,
    }


ROLES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _start(cluster: str, role: str, argv: list[str]) -> ProcessRecord:
    cgroup = host.cgroup_create(control_plane_cgroup(cluster) / role)
    log = cluster_dir(cluster) / f"{role}.log"
    process = host.spawn(argv, cgroup=cgroup, log=log)
    return ProcessRecord.of(process.pid, f"{cluster}/{role}")


def start(cluster: str) -> ClusterRecord:
    """Start one cluster's etcd and kube-apiserver; does not wait. `start_controllers` follows once the
    apiserver is ready (kube-controller-manager exits at once when it cannot reach it)."""
    files = _prepare(cluster)
    addressing = ClusterAddressing(cluster)
    directory = cluster_dir(cluster)
    etcd_url = f"http://127.0.0.1:{addressing.etcd_client_port}"
    peer_url = f"http://127.0.0.1:{addressing.etcd_peer_port}"
    processes = [
        _start(cluster, "etcd", [
            str(tool_path("etcd")), "--name", cluster, "--data-dir", str(directory / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{cluster}={peer_url}", "--log-level", "warn",
            "--quota-backend-bytes", str(2 * 1024**3),
        ]),
        _start(cluster, "kube-apiserver", [
            str(tool_path("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={HOST_UNDERLAY_IP}", f"--secure-port={addressing.apiserver_port}",
            f"--advertise-address={HOST_UNDERLAY_IP}",
            f"--tls-cert-file={files['serving_cert']}", f"--tls-private-key-file={files['serving_key']}",
            f"--client-ca-file={files['ca']}",
            f"--service-account-key-file={files['sa_public']}",
            f"--service-account-signing-key-file={files['sa_private']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={addressing.service_cidr}",
            "--service-node-port-range=30000-32767",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false",
            "--event-ttl=1h", "--v=1",
        ]),
    ]
    return ClusterRecord(
        name=cluster, kubeconfig=str(files["kubeconfig"]), apiserver_url=apiserver_url(cluster),
        processes=processes,
    )


def start_controllers(record: ClusterRecord) -> None:
    """Start kube-controller-manager and kube-scheduler of a cluster whose apiserver is ready."""
    cluster = record.name
    files = _prepare(cluster)
    addressing = ClusterAddressing(cluster)
    record.processes += [
        _start(cluster, "kube-controller-manager", [
            str(tool_path("kube-controller-manager")),
            f"--kubeconfig={files['kubeconfig']}",
            f"--authentication-kubeconfig={files['kubeconfig']}",
            f"--authorization-kubeconfig={files['kubeconfig']}",
            "--bind-address=127.0.0.1", f"--secure-port={addressing.controller_manager_port}",
            f"--service-account-private-key-file={files['sa_private']}",
            f"--root-ca-file={files['ca']}",
            f"--cluster-signing-cert-file={files['ca']}", f"--cluster-signing-key-file={files['ca_key']}",
            f"--cluster-cidr={addressing.pod_cidr}", f"--service-cluster-ip-range={addressing.service_cidr}",
            "--allocate-node-cidrs=false", "--leader-elect=false", "--use-service-account-credentials=true",
            "--controllers=*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--profiling=false", "--v=1",
        ]),
        _start(cluster, "kube-scheduler", [
            str(tool_path("kube-scheduler")),
            f"--kubeconfig={files['kubeconfig']}",
            f"--authentication-kubeconfig={files['kubeconfig']}",
            f"--authorization-kubeconfig={files['kubeconfig']}",
            "--bind-address=127.0.0.1", f"--secure-port={addressing.scheduler_port}",
            "--leader-elect=false", "--profiling=false", "--v=1",
        ]),
    ]


def _ssl_context(cluster: str) -> ssl.SSLContext:
    pki_dir = cluster_dir(cluster) / "pki"
    context = ssl.create_default_context(cafile=str(LAB_DIR / "pki" / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return context


def readyz(cluster: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"{apiserver_url(cluster)}/readyz", timeout=timeout,
                                    context=_ssl_context(cluster)) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_ready(record: ClusterRecord, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.role for p in record.processes if not p.alive()]
        if dead:
            logs = ", ".join(str(cluster_dir(record.name) / f"{role.split('/')[1]}.log") for role in dead)
            raise host.LabError(f"cluster {record.name}: {', '.join(dead)} exited; see {logs}")
        if readyz(record.name):
            return
        time.sleep(0.25)
    raise host.LabError(f"cluster {record.name}: apiserver not ready after {timeout:.0f}s; "
                        f"see {cluster_dir(record.name) / 'kube-apiserver.log'}")


def wait_all_ready(records: list[ClusterRecord]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(records))) as pool:
        for future in [pool.submit(wait_ready, record) for record in records]:
            future.result()


def stop(record: ClusterRecord) -> None:
    for process in reversed(record.processes):
        process.stop()
    host.cgroup_remove(control_plane_cgroup(record.name))
