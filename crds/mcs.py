"""The Kubernetes Multi-Cluster Services API (KEP-1645) as members serve it, plus ClusterProperty.

Users speak MCS in their member clusters: a `ServiceExport` named like a Service exports it; the
member controller writes a `ServiceImport` (and its EndpointSlices) for every Service the clusterset
exports, and the `ClusterProperty` objects that name the cluster. Our own hub-side records are in
crds.federation and never share a kind name with these.

- `multicluster.x-k8s.io` kinds are served as v1alpha1 and v1beta1 with one schema (no conversion
  is needed), v1alpha1 stored, so clients of either version work.
- `ClusterProperty` is `about.k8s.io/v1alpha1` (KEP-2149), cluster-scoped.

These are written from the KEP's field list for this project; they are generated into
crds/multicluster.x-k8s.io_*.yaml and crds/about.k8s.io_*.yaml like every other kind.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from crds._base import (
    AGE_COLUMN,
    LABEL_KEY_MESSAGE,
    LABEL_MAP_RULE,
    MAX_PORTS,
    ApiModel,
    Conditions,
    DnsLabel,
    Int,
    KubeObject,
    LabelMap,
    PortName,
    PrinterColumn,
    condition_column,
    is_label_key,
    list_map,
    rule,
    unique_by,
    validations,
)

MCS_GROUP = "multicluster.x-k8s.io"
MCS_VERSIONS = ("v1alpha1", "v1beta1")
ABOUT_GROUP = "about.k8s.io"

# Labels of the EndpointSlices a member controller makes for an import (KEP-1645).
MCS_SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"
MCS_SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
# Well-known ClusterProperty names (KEP-2149).
CLUSTER_ID_PROPERTY = "cluster.clusterset.k8s.io"
CLUSTERSET_ID_PROPERTY = "clusterset.k8s.io"
# Locality of an export, on the MCS ServiceExport: none (MCS's default), local or remote.
AFFINITY_ANNOTATION = "balancing.elf.io/affinity"
CLUSTER_ID_KEP = "https://github.com/kubernetes/enhancements/tree/master/keps/sig-multicluster/2149-clusterid"

MAX_EXPORTED_METADATA = 64  # as a label selector's matchLabels
MAX_IMPORT_CLUSTERS = 1024
ATOMIC_LIST = {"x-kubernetes-list-type": "atomic"}


class McsObject(KubeObject):
    """A namespaced multicluster.x-k8s.io kind, served as v1alpha1 and v1beta1; its spec is optional."""

    group: ClassVar[str] = MCS_GROUP
    versions: ClassVar[tuple[str, ...]] = MCS_VERSIONS
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    spec_required: ClassVar[bool] = False

    api_version: str = f"{MCS_GROUP}/{MCS_VERSIONS[0]}"


# --- ServiceExport -------------------------------------------------------------------------------------

def _check_annotation_keys(annotations: dict[str, str]) -> dict[str, str]:
    for key in annotations:
        if not is_label_key(key):
            raise ValueError(f"every key {LABEL_KEY_MESSAGE}, not {key!r}")
    return annotations


AnnotationMap = Annotated[
    dict[str, Annotated[str, Field(max_length=4096)]],
    Field(max_length=MAX_EXPORTED_METADATA, json_schema_extra=validations(LABEL_MAP_RULE)),
    AfterValidator(_check_annotation_keys),
]


class ServiceExportSpec(ApiModel):
    """Extra metadata to carry to the import (optional for an implementation; kept as given)."""

    exported_labels: LabelMap | None = Field(default=None, description="Labels to export.")
    exported_annotations: AnnotationMap | None = Field(default=None, description="Annotations to export.")


class ServiceExportStatus(ApiModel):
    conditions: Conditions | None = Field(
        default=None,
        description=(
            "Valid (False/NoService, False/InvalidServiceType), Ready (exported to the hub), Conflict"
            " (True with the MCS reasons TypeConflict, PortConflict, SessionAffinityConflict, ...)."
        ),
    )


class ServiceExport(McsObject):
    """Exports the Service of the same namespace and name to every cluster of the clusterset."""

    kind_name: ClassVar[str] = "ServiceExport"
    plural: ClassVar[str] = "serviceexports"
    short_names: ClassVar[tuple[str, ...]] = ("svcex", "svcexport")
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        condition_column("Valid"),
        condition_column("Ready"),
        condition_column("Conflict"),
        AGE_COLUMN,
    )

    kind: Literal["ServiceExport"] = "ServiceExport"
    spec: ServiceExportSpec | None = None
    status: ServiceExportStatus | None = None


# --- ServiceImport -------------------------------------------------------------------------------------


class ImportPort(ApiModel):
    """A port of the imported service (the union of the exports' ports)."""

    name: PortName | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = Field(default="TCP", description="TCP, UDP or SCTP.")
    app_protocol: Annotated[str, Field(max_length=316)] | None = Field(
        default=None, description="Application protocol, as in a Service port."
    )
    port: Annotated[Int, Field(ge=1, le=65535)]


class ClientIPConfig(ApiModel):
    timeout_seconds: Annotated[Int, Field(ge=1, le=86400)] | None = Field(
        default=None, description="Session affinity timeout (ClientIP)."
    )


class SessionAffinityConfig(ApiModel):
    client_ip: ClientIPConfig | None = Field(default=None, alias="clientIP")


IP_RULE = rule("isIP(self)", message_expression="'must be an IP address, not \"' + self + '\"'")


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"must be an IP address, not {value!r}") from None
    return value


IPAddress = Annotated[str, Field(max_length=45, json_schema_extra=validations(IP_RULE)), AfterValidator(_check_ip)]


class ServiceImportSpec(ApiModel):
    ips: (
        Annotated[
            list[IPAddress],
            Field(max_length=2),
        ]
        | None
    ) = Field(default=None, description="The clusterset IP(s): the same in every member (ClusterSetIP only).")
    ports: Annotated[list[ImportPort], Field(max_length=MAX_PORTS)] | None = Field(
        default=None, description="The union of the exported Services' ports."
    )
    type: Literal["ClusterSetIP", "Headless"] = Field(description="ClusterSetIP (a VIP) or Headless.")
    session_affinity: Literal["None", "ClientIP"] | None = Field(default=None, description="None or ClientIP.")
    session_affinity_config: SessionAffinityConfig | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = Field(default=None, description="Cluster or Local.")
    ip_families: (
        Annotated[list[Literal["IPv4", "IPv6"]], Field(max_length=2, json_schema_extra=ATOMIC_LIST)]
        | None
    ) = Field(default=None, description="IP families of ips.")
    traffic_distribution: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="As Service.spec.trafficDistribution (e.g. PreferClose)."
    )


class ImportCluster(ApiModel):
    cluster: DnsLabel = Field(description="A cluster whose export forms this import.")


class ServiceImportStatus(ApiModel):
    clusters: (
        Annotated[
            list[ImportCluster],
            Field(max_length=MAX_IMPORT_CLUSTERS, json_schema_extra=list_map("cluster")),
            unique_by("cluster"),
        ]
        | None
    ) = Field(default=None, description="The exporting clusters.")
    conditions: Conditions | None = None


class ServiceImport(McsObject):
    """A Service exported by one or more clusters of the clusterset, as a member sees it (written by
    the member controller)."""

    kind_name: ClassVar[str] = "ServiceImport"
    plural: ClassVar[str] = "serviceimports"
    short_names: ClassVar[tuple[str, ...]] = ("svcim", "svcimport")
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Type", json_path=".spec.type", description="ClusterSetIP or Headless"),
        PrinterColumn(name="IP", json_path=".spec.ips[0]", description="Clusterset IP"),
        AGE_COLUMN,
    )

    kind: Literal["ServiceImport"] = "ServiceImport"
    spec: ServiceImportSpec | None = None
    status: ServiceImportStatus | None = None


# --- ClusterProperty -----------------------------------------------------------------------------------


class ClusterPropertySpec(ApiModel):
    value: Annotated[str, Field(min_length=1, max_length=128000)] = Field(description="The property's value.")


class ClusterProperty(KubeObject):
    """A fact about this cluster; `cluster.clusterset.k8s.io` holds its id in the clusterset."""

    group: ClassVar[str] = ABOUT_GROUP
    versions: ClassVar[tuple[str, ...]] = ("v1alpha1",)
    kind_name: ClassVar[str] = "ClusterProperty"
    # about.k8s.io is a protected group: the apiserver wants to know where the API was approved.
    crd_annotations: ClassVar[tuple[tuple[str, str], ...]] = (("api-approved.kubernetes.io", CLUSTER_ID_KEP),)
    plural: ClassVar[str] = "clusterproperties"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Value", json_path=".spec.value", description="Value of the property"),
        AGE_COLUMN,
    )

    api_version: str = f"{ABOUT_GROUP}/v1alpha1"
    kind: Literal["ClusterProperty"] = "ClusterProperty"
    spec: ClusterPropertySpec
