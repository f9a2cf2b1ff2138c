"""`balancing lab ...` verbs: the local federation on one Linux host."""

from __future__ import annotations

import argparse
from typing import Any

from lab.host import LabError


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"label {item!r}: expected key=value")
        labels[key] = value
    return labels


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("lab", help="the local federation lab")
    verbs = parser.add_subparsers(dest="lab_command", required=True, metavar="VERB")

    up = verbs.add_parser("up", help="start a hub and N member clusters (idempotent)")
    up.add_argument("--members", type=int, default=2)
    up.add_argument("--nodes-per-cluster", type=int, default=2)
    up.set_defaults(handler=_up)

    verbs.add_parser("status", help="show clusters, nodes and pods").set_defaults(handler=_status)
    verbs.add_parser("down", help="remove everything the lab made").set_defaults(handler=_down)

    kubeconfig = verbs.add_parser("kubeconfig", help="print the kubeconfig path of a cluster")
    kubeconfig.add_argument("cluster")
    kubeconfig.set_defaults(handler=_kubeconfig)

    pod = verbs.add_parser("pod", help="start an echo-server pod: CLUSTER/NAMESPACE/NAME")
    pod.add_argument("reference", metavar="CLUSTER/NAMESPACE/NAME")
    pod.add_argument("--node", help="the node to run on (required unless --delete)")
    pod.add_argument("--labels", type=_labels, default={})
    pod.add_argument("--port", type=int, default=8080)
    pod.add_argument("--host-port", type=int)
    pod.add_argument("--delete", action="store_true", help="remove the pod instead")
    pod.set_defaults(handler=_pod)

    exec_ = verbs.add_parser("exec", help="run a command on a node (its netns and cgroup) or in a pod's container")
    exec_.add_argument("target", metavar="NODE|CLUSTER/NAMESPACE/NAME")
    exec_.add_argument("-c", "--container", help="the pod's container (default: its first running one)")
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...")
    exec_.set_defaults(handler=_exec)

    logs = verbs.add_parser("logs", help="print a pod container's output (what `kubectl logs` would show)")
    logs.add_argument("reference", metavar="CLUSTER/NAMESPACE/NAME")
    logs.add_argument("-c", "--container", help="the container (default: the pod's first)")
    logs.add_argument("-p", "--previous", action="store_true", help="the container's previous start")
    logs.set_defaults(handler=_logs)

    values = verbs.add_parser("helm-values", help="print the Helm values a chart needs on a lab cluster (YAML)")
    values.add_argument("cluster")
    values.set_defaults(handler=_helm_values)


def _up(args: argparse.Namespace) -> int:
    from lab import federation

    federation.up(args.members, args.nodes_per_cluster)
    print(federation.status())
    return 0


def _status(args: argparse.Namespace) -> int:
    from lab import federation

    print(federation.status())
    return 0


def _down(args: argparse.Namespace) -> int:
    from lab import federation

    federation.down()
    print("lab is down")
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from lab import federation

    print(federation.kubeconfig(args.cluster))
    return 0


def _pod(args: argparse.Namespace) -> int:
    from lab import federation

    if args.delete:
        federation.remove_pod(args.reference)
        return 0
    if not args.node:
        raise LabError("balancing lab pod needs --node NODE")
    pod = federation.add_pod(args.reference, args.node, args.labels, args.port, args.host_port)
    print(f"{pod.key} on {pod.node}: {pod.ip}:{pod.port}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    from lab import federation

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("nothing to run: balancing lab exec TARGET -- CMD...")
    return federation.exec_in(args.target, command, args.container)


def _logs(args: argparse.Namespace) -> int:
    import sys

    from lab import federation

    path, notice = federation.pod_logs(args.reference, args.container, args.previous)
    if notice:
        print(notice, file=sys.stderr)
    sys.stdout.buffer.write(path.read_bytes())
    return 0


def _helm_values(args: argparse.Namespace) -> int:
    import yaml

    from lab import federation

    print(f"# balancing lab helm-values {args.cluster}: use with `helm install ... -f -`")
    print(yaml.safe_dump(federation.helm_values(args.cluster), sort_keys=False), end="")
    return 0
