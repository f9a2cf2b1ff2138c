#!/usr/bin/env bash
# The one install step: OS packages (apt), the Python package (pip install -e '.[dev]'), and the
# pinned lab tools (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd, etcdctl, kubectl, helm,
# wireguard-go) cached under $BALANCING_CACHE (default ~/.cache/balancing), plus the BPF object.
# Idempotent: a warm run takes seconds. Versions and sources: lab/toolchain.py, docs/install.md.
#
#   bash lab/install.sh            # everything
#   bash lab/install.sh etcd helm  # only these steps
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${BALANCING_PYTHON:-python3}" "$repo/lab/toolchain.py" install "$@"
