"""Joining a member cluster: what it needs on the hub, and what it takes home.

The hub chart is the only definition of a member's hub-side objects (its namespace, ServiceAccount
and bindings: template "hub.member" in charts/hub/templates/_helpers.tpl). `balancing hub add-member
NAME` renders that template for NAME with the same release name and catalogue as the installed hub
(`helm template --show-only templates/members.yaml`) and creates whatever is missing. What the member
takes home is a values file for charts/member, or a Secret, carrying the hub's address, its CA, a
token bound to the member's ServiceAccount, and the member's name.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from crds import DEFAULT_CATALOGUE_NAMESPACE

MEMBER_SERVICE_ACCOUNT = "member"
DEFAULT_TOKEN_SECONDS = 365 * 24 * 3600
DEFAULT_SECRET_NAME = "balancing-hub-credentials"
DEFAULT_SECRET_NAMESPACE = "balancing-system"


class JoinError(RuntimeError):
    user_facing = True


def check_member_name(name: str) -> str:
    if len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        raise JoinError(f"member name {name!r} must be a DNS label (lowercase letters, digits and '-', at most 63):"
                        " it names the member's namespace on the hub")
    return name


def find_helm(explicit: str | None = None) -> str:
    """--helm, $BALANCING_HELM, $BALANCING_CACHE/bin/helm (the project's toolchain), then PATH."""
    cache = Path(os.environ.get("BALANCING_CACHE") or Path.home() / ".cache" / "balancing") / "bin" / "helm"
    for candidate in (explicit, os.environ.get("BALANCING_HELM"), str(cache) if cache.exists() else None,
                      shutil.which("helm")):
        if candidate:
            return candidate
    raise JoinError("helm not found: add-member renders the hub chart with helm; install helm or pass --helm PATH")


def find_chart(explicit: str | None = None) -> Path:
    """--chart, else charts/hub beside the package (a checkout), else the copy an installed package carries."""
    if explicit:
        chart = Path(explicit)
    else:
        checkout = Path(__file__).resolve().parent.parent / "charts" / "hub"
        chart = checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "balancing" / "charts" / "hub"
    if not (chart / "Chart.yaml").is_file():
        raise JoinError(f"no hub chart at {chart}: pass --chart PATH (the charts/hub directory the hub was installed "
                        "from)")
    return chart


def render_member_objects(helm: str, chart: Path, release: str, catalogue: str, name: str) -> list[dict[str, Any]]:
    """The hub chart's objects for one member, as the installed release would make them."""
    command = [helm, "template", release, str(chart), "--show-only", "templates/members.yaml",
               "--set", f"members[0].name={name}", "--set", f"catalogueNamespace={catalogue}"]
    try:
        rendered = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise JoinError(f"cannot run {helm}: {error}") from None
    if rendered.returncode != 0:
        raise JoinError(f"helm could not render the member's objects: {' '.join(rendered.stderr.split())}")
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@dataclass(frozen=True)
class Credentials:
    """What a member needs to reach its namespace on the hub."""

    name: str
    server: str
    ca_data: str  # base64 of the PEM bundle, as in a kubeconfig's certificate-authority-data
    token: str
    expires: datetime
    catalogue: str = DEFAULT_CATALOGUE_NAMESPACE

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "hub", "cluster": {"server": self.server, "certificate-authority-data": self.ca_data}}
            ],
            "users": [{"name": self.name, "user": {"token": self.token}}],
            "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": self.name, "namespace": self.name}}],
            "current-context": "hub",
        }


def read_ca(path: str | None) -> str:
    if not path:
        raise JoinError("the hub kubeconfig names no certificate authority: members could not verify the hub")
    try:
        return base64.b64encode(Path(path).read_bytes()).decode()
    except OSError as error:
        raise JoinError(f"cannot read the hub's CA {path}: {error}") from None


def _header(credentials: Credentials, what: str) -> str:
    return (f"# {what} for member cluster {credentials.name}, made by `balancing hub add-member "
            f"{credentials.name}`.\n# The token expires at {credentials.expires.isoformat()}; run add-member again "
            "for a fresh one.\n# It is a credential: keep this file out of version control.\n")


def values_file(credentials: Credentials) -> str:
    """charts/member values: `helm install balancing-member charts/member -f THIS`."""
    values = {
        "clusterName": credentials.name,
        "hub": {
            "server": credentials.server,
            "caData": credentials.ca_data,
            "token": credentials.token,
            "catalogueNamespace": credentials.catalogue,
        },
    }
    return _header(credentials, "charts/member values") + yaml.safe_dump(values, sort_keys=False, width=4096)


def secret_manifest(credentials: Credentials, namespace: str = DEFAULT_SECRET_NAMESPACE,
                    name: str = DEFAULT_SECRET_NAME) -> str:
    """A Secret with a kubeconfig for the hub (and the same fields as the values file)."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "balancing-member",
                                "balancing.elf.io/member-cluster": credentials.name},
                     "annotations": {"balancing.elf.io/token-expires": credentials.expires.isoformat()}},
        "type": "Opaque",
        "stringData": {
            "clusterName": credentials.name,
            "server": credentials.server,
            "ca.crt": base64.b64decode(credentials.ca_data).decode(),
            "token": credentials.token,
            "catalogueNamespace": credentials.catalogue,
            "kubeconfig": yaml.safe_dump(credentials.kubeconfig(), sort_keys=False, width=4096),
        },
    }
    return _header(credentials, "A Secret") + yaml.safe_dump(secret, sort_keys=False, width=4096)
