"""The CRD YAML is generated from the models, deterministically, and the committed files are current."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crds import (
    ALL_KINDS,
    BALANCING_KINDS,
    MCS_KINDS,
    BalancingNode,
    BalancingPolicy,
    ClusterProperty,
    LocalRedirectPolicy,
)
from crds.generate import CRD_DIR, crd_document, crd_filename, rendered_files, stale_files, write

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    assert stale_files() == [], "run `python -m crds.generate` and commit crds/*.yaml"


def test_stale_check_notices_an_edited_file(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale_files(tmp_path) == []
    victim = tmp_path / crd_filename(BalancingPolicy)
    victim.write_text(victim.read_text().replace("maxItems: 64", "maxItems: 65", 1))
    (tmp_path / "balancing.elf.io_leftovers.yaml").write_text("{}\n")
    assert stale_files(tmp_path) == ["balancing.elf.io_balancingpolicies.yaml", "balancing.elf.io_leftovers.yaml"]


def test_check_command_fails_on_stale_files_and_passes_on_current_ones() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another hash seed: output must not depend on it
    result = subprocess.run(
        [sys.executable, "-m", "crds.generate", "--check"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_generation_is_deterministic() -> None:
    assert rendered_files() == rendered_files()


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _schemas() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind in ALL_KINDS:
        root = crd_document(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(root):
            yield kind.kind_name, path, node


def test_schemas_are_structural() -> None:
    for kind, path, node in _schemas():
        assert "type" in node, f"{kind}{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "nullable", "title"} & set(node), f"{kind}{path}"


def test_no_kind_has_a_private_key_field() -> None:
    for kind, path, node in _schemas():
        for name in node.get("properties", {}):
            assert "private" not in name.lower(), f"{kind}{path}.{name}: private keys never go to the API"


def test_crds_files_are_valid_yaml_with_one_crd_each() -> None:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert len(documents) == 1, path.name
        assert documents[0]["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize(
    ("kind", "short_name", "scope"),
    [(BalancingPolicy, "bp", "Cluster"), (LocalRedirectPolicy, "lrp", "Cluster")],
)
def test_policy_crds_look_like_kubernetes(kind: type[Any], short_name: str, scope: str) -> None:
    crd = crd_document(kind)
    assert crd["metadata"]["name"] == f"{kind.plural}.balancing.elf.io"
    names = crd["spec"]["names"]
    assert short_name in names["shortNames"]
    assert "balancing" in names["categories"]
    assert crd["spec"]["scope"] == scope
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"] if not column.get("priority")]
    assert columns[0] == "Enabled" and columns[-2:] == ["Ready", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["enabled"]["default"] is True


def test_every_federation_kind_is_namespaced_with_status_and_columns() -> None:
    for kind in BALANCING_KINDS:
        if kind in (BalancingPolicy, LocalRedirectPolicy, BalancingNode):  # a member's own kinds, cluster-scoped
            continue
        crd = crd_document(kind)
        assert crd["spec"]["scope"] == "Namespaced", kind.kind_name
        assert "balancing-federation" in crd["spec"]["names"]["categories"]
        assert crd["spec"]["versions"][0]["additionalPrinterColumns"], kind.kind_name


def test_mcs_kinds_serve_v1alpha1_and_v1beta1_with_one_schema_and_store_v1alpha1() -> None:
    for kind in MCS_KINDS:
        crd = crd_document(kind)
        versions = crd["spec"]["versions"]
        if kind is ClusterProperty:
            assert crd["metadata"]["name"] == "clusterproperties.about.k8s.io"
            assert crd["spec"]["scope"] == "Cluster"
            assert [(v["name"], v["storage"]) for v in versions] == [("v1alpha1", True)]
            continue
        assert crd["metadata"]["name"] == f"{kind.plural}.multicluster.x-k8s.io"
        assert [(v["name"], v["served"], v["storage"]) for v in versions] == [
            ("v1alpha1", True, True),
            ("v1beta1", True, False),
        ]
        assert versions[0]["schema"] == versions[1]["schema"]
        assert "conversion" not in crd["spec"]  # None: the schemas are the same
        assert crd_filename(kind) == f"multicluster.x-k8s.io_{kind.plural}.yaml"


def test_no_kind_name_is_used_twice_across_groups() -> None:
    """A hub can also be a member: every CRD installs on one cluster, so no kind may collide."""
    names = [kind.kind_name for kind in ALL_KINDS]
    assert len(names) == len(set(names))
    assert "ExportedService" in names and "ServiceExport" in names
