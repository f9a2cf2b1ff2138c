#!/usr/bin/env bash
# Quick start: install everything, bring up a hub and two member clusters on this host, install the
# CRDs, apply the seed example policies (examples/seeds/) on the hub and show them with kubectl, then
# run the main job (lab/demo.py): a client pod in member-1 reaches pods in member-2 through a VIP
# resolved by the cgroup eBPF socket load balancer, over the WireGuard mesh.
# The lab stays up afterwards; `balancing lab down` removes it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash lab/install.sh
python="${BALANCING_PYTHON:-python3}"
export PATH="$("$python" lab/toolchain.py bin-dir):$PATH"  # the pinned kubectl/helm come first
balancing() { "$python" -m balancing "$@"; }

balancing lab up --members 2

shopt -s nullglob
examples=(examples/seeds/*.yaml)  # the policies from the user guides (seeds 000 and 003)

# `lab up` has installed every crds/*.yaml on every cluster.
hub="$(balancing lab kubeconfig hub)"
if ((${#examples[@]})); then
    kubectl --kubeconfig "$hub" apply -f examples/seeds/
fi
echo
echo "# policies on the hub (kubectl --kubeconfig $hub get balancingpolicies,localredirectpolicies)"
kubectl --kubeconfig "$hub" get balancingpolicies,localredirectpolicies
echo
echo "# the main job: a pod in member-1 reaches pods in member-2 through a VIP and the WireGuard mesh"
"$python" -m lab.demo
echo
echo "The lab is up: kubectl --kubeconfig \"\$(balancing lab kubeconfig CLUSTER)\" ...; remove it with: balancing lab down"
