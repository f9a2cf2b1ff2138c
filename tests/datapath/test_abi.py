"""The Python mirrors of the C structs and constants match the compiled object (BTF, headers)."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datapath.lb import abi, codec
from datapath.lb.build import alignchecker_object, ensure_object
from datapath.paths import bpf_source_dir


def btf_types(path: Path) -> dict[int, dict[str, Any]]:
    out = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return {entry["id"]: entry for entry in json.loads(out)["types"]}


@pytest.fixture(scope="module")
def alignchecker_btf() -> dict[int, dict[str, Any]]:
    return btf_types(alignchecker_object())


def resolved_size(types: dict[int, dict[str, Any]], type_id: int) -> int:
    entry = types[type_id]
    while entry["kind"] in ("TYPEDEF", "VOLATILE", "CONST"):
        entry = types[entry["type_id"]]
    if entry["kind"] == "ARRAY":
        return int(entry["nr_elems"]) * resolved_size(types, entry["type_id"])
    return int(entry["size"])


@pytest.mark.parametrize("c_name", sorted(abi.MIRRORS))
def test_each_mirror_has_the_size_and_member_offsets_of_the_c_struct(
    alignchecker_btf: dict[int, dict[str, Any]], c_name: str
) -> None:
    mirror = abi.MIRRORS[c_name]
    (btf,) = [t for t in alignchecker_btf.values() if t["kind"] == "STRUCT" and t.get("name") == c_name]

    assert btf["size"] == ctypes.sizeof(mirror), f"struct {c_name} size"
    c_members = [
        (m["name"], m["bits_offset"] // 8, resolved_size(alignchecker_btf, m["type_id"])) for m in btf["members"]
    ]
    py_members = [
        (name, getattr(mirror, name).offset, ctypes.sizeof(field_type)) for name, field_type, *_bits in mirror._fields_
    ]
    assert py_members == c_members
    assert codec.packer(mirror).size == ctypes.sizeof(mirror)


def test_every_map_in_the_program_object_is_known_with_its_sizes() -> None:
    types = btf_types(ensure_object())
    (maps_section,) = [t for t in types.values() if t["kind"] == "DATASEC" and t["name"] == ".maps"]
    names = {types[var["type_id"]]["name"] for var in maps_section["vars"]}
    assert names == set(abi.MAP_LAYOUTS)
    assert all(len(name) <= 15 for name in names), "BPF map names hold 15 characters"
    assert all(re.fullmatch(r"bf_lb4_[a-z]+_v\d+", name) for name in names), "prefixed and versioned"


def c_defines() -> dict[str, int]:
    text = (bpf_source_dir() / "lib" / "common.h").read_text()
    return {name: int(value) for name, value in re.findall(r"#define (BF_\w+) (\d+)\b", text)}


def with_prefix(defines: dict[str, int], prefix: str) -> dict[str, int]:
    return {name.removeprefix(prefix): value for name, value in defines.items() if name.startswith(prefix)}


def test_the_enums_match_the_c_constants() -> None:
    defines = c_defines()
    tiers = {tier.name: tier.value for tier in abi.Tier}
    assert with_prefix(defines, "BF_TIER_") == {**tiers, "NONE": abi.TIER_NONE}
    assert defines["BF_TIERS"] == len(abi.Tier)
    assert with_prefix(defines, "BF_HOOK_") == {hook.name: hook.value for hook in abi.Hook}
    assert with_prefix(defines, "BF_RESULT_") == {result.name: result.value for result in abi.Result}
    assert with_prefix(defines, "BF_STAT_") == {stat.name: stat.value for stat in abi.Stat}
    assert defines["BF_STATS"] == abi.STATS
    assert defines["BF_POLICY_NAME_LEN"] == abi.POLICY_NAME_LEN
    assert with_prefix(defines, "BF_FE_") == {flag.name: flag.value for flag in abi.FrontendFlag}
    assert defines["BF_CGROUP_LEVELS"] == abi.CGROUP_LEVELS
    assert defines["BF_LEVEL_UNKNOWN"] == abi.LEVEL_UNKNOWN
    assert defines["BF_ECONNREFUSED"] == abi.ECONNREFUSED
