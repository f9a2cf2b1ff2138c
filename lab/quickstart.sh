#!/usr/bin/env bash
# Quick start: install everything, bring up a hub and two member clusters on this host, then run the
# main job (lab/demo.py) with the components installed by Helm:
#  - the member chart on member-1 and member-2 (node agents, member controllers; no kube-proxy anywhere);
#  - the seed examples (examples/seeds/) live on member-1, shown Ready by `kubectl get bp,lrp`, and
#    curl through them;
#  - a member-1 pod reaching member-2 pods through a BalancingPolicy VIP over the WireGuard mesh.
# The lab stays up afterwards; `python -m lab.demo --undo` removes the demo, `balancing lab down` the lab.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash lab/install.sh
python="${BALANCING_PYTHON:-python3}"
export PATH="$("$python" lab/toolchain.py bin-dir):$PATH"  # the pinned kubectl/helm come first

"$python" -m balancing lab up --members 2
"$python" -m lab.demo
echo
echo "The lab is up: kubectl --kubeconfig \"\$(balancing lab kubeconfig CLUSTER)\" ...; remove it with: balancing lab down"
