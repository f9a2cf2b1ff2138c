"""`balancing hub ...` and `balancing status`: the hub operator, joining a member, the federation's state."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def register(subparsers: Any) -> None:
    hub = subparsers.add_parser("hub", help="the hub: run its operator, add a member cluster")
    verbs = hub.add_subparsers(dest="hub_command", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the hub operator (settings from the environment, see docs/federation.md)")
    run.add_argument("--kubeconfig", help="the hub's kubeconfig (default: in-cluster, then KUBECONFIG)")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(handler=_run)

    add = verbs.add_parser(
        "add-member",
        help="create what a member needs on the hub (if missing) and print its credentials",
        description="Create member NAME's namespace, ServiceAccount and bindings on the hub (rendered from the "
        "hub chart; existing objects are left alone) and print what the member installs with: a values file "
        "for charts/member, or a Secret. See docs/federation.md.",
    )
    add.add_argument("name", metavar="NAME", help="the member cluster's name (a DNS label; its namespace on the hub)")
    add.add_argument("--kubeconfig", help="the hub's kubeconfig (default: KUBECONFIG, ~/.kube/config)")
    add.add_argument("--server", help="the hub's URL as members reach it (default: the kubeconfig's server)")
    add.add_argument("-o", "--output", choices=("values", "secret"), default="values",
                     help="print a values file for charts/member (default) or a Secret manifest")
    add.add_argument("--token-expiration", type=int, default=365 * 24 * 3600, metavar="SECONDS",
                     help="lifetime of the member's token (default: one year)")
    add.add_argument("--secret-namespace", default="balancing-system",
                     help="namespace of the printed Secret, in the member cluster (default: balancing-system)")
    add.add_argument("--catalogue-namespace", help="the hub's catalogue namespace (default: found by its label)")
    add.add_argument("--release", help="the hub's Helm release (default: found on the catalogue namespace)")
    add.add_argument("--chart", help="the hub chart directory (default: the one this package carries)")
    add.add_argument("--helm", help="the helm binary (default: BALANCING_HELM, the project cache, PATH)")
    add.set_defaults(handler=_add_member)

    status = subparsers.add_parser("status", help="the federation as the hub sees it: members, mesh, services")
    status.add_argument("--kubeconfig", help="the hub's kubeconfig (default: KUBECONFIG, ~/.kube/config)")
    status.add_argument("--catalogue-namespace", help="the hub's catalogue namespace (default: found by its label)")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace) -> int:
    from hub.api import run
    from hub.settings import HubSettings

    return run(HubSettings.from_environment(), args.kubeconfig, args.verbose)


def _add_member(args: argparse.Namespace) -> int:
    from hub import api, joining

    name = joining.check_member_name(args.name)
    if args.token_expiration < 600:
        raise joining.JoinError("--token-expiration must be at least 600 seconds (the apiserver's minimum)")
    client = api.api_client(args.kubeconfig)
    catalogue, release = api.hub_release(client, args.catalogue_namespace)
    release = args.release or release
    objects = joining.render_member_objects(joining.find_helm(args.helm), joining.find_chart(args.chart), release,
                                            catalogue, name)
    for what, created in api.ensure_objects(client, objects):
        print(f"{'created' if created else 'exists '}  {what}", file=sys.stderr)
    token, expires = api.request_token(client, name, joining.MEMBER_SERVICE_ACCOUNT, args.token_expiration)
    server, ca_path = api.server_and_ca(client)
    credentials = joining.Credentials(name=name, server=args.server or server, ca_data=joining.read_ca(ca_path),
                                      token=token, expires=expires, catalogue=catalogue)
    if (expires - _now()).total_seconds() < args.token_expiration - 60:
        print(f"note: the hub granted a shorter token than asked: it expires at {expires.isoformat()}",
              file=sys.stderr)
    if args.output == "secret":
        print(joining.secret_manifest(credentials, args.secret_namespace), end="")
    else:
        print(joining.values_file(credentials), end="")
    return 0


def _status(args: argparse.Namespace) -> int:
    from crds import ExportedService, FederatedEndpointSlice, FederatedService, MemberCluster, NodeTunnelEndpoint
    from hub import api, status

    client = api.api_client(args.kubeconfig)
    catalogue = api.hub_release(client, args.catalogue_namespace)[0]
    objects = api.list_objects(client, (MemberCluster, ExportedService, FederatedService, FederatedEndpointSlice,
                                        NodeTunnelEndpoint))
    report = status.build(objects, catalogue, _now())
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(status.render(report), end="")
    return 0


def _now() -> datetime:
    return datetime.now(UTC)
