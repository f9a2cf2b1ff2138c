"""The Containerfile builds the image the charts reference, and the lab runs pods the way that image
would: same entrypoint, working directory and environment. Docker cannot run here, so this checks
the file against the lab's copy of its configuration and against the package's layout."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from lab import podspec

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = (REPO / "Containerfile").read_text()


def _instructions(keyword: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", CONTAINERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(keyword + " ")]


def test_the_lab_runs_pods_with_the_image_s_entrypoint_workdir_and_environment() -> None:
    assert tuple(json.loads(_instructions("ENTRYPOINT")[-1])) == podspec.IMAGE_ENTRYPOINT
    assert _instructions("WORKDIR")[-1] == podspec.IMAGE_WORKDIR
    env = dict(item.split("=", 1) for line in _instructions("ENV") for item in line.split())
    for name, value in podspec.IMAGE_ENV.items():
        assert env[name] == value


def test_the_image_is_debian_with_the_package_the_bpf_object_and_wireguard() -> None:
    assert all(base.startswith("debian:") for base in (line.split()[0] for line in _instructions("FROM")))
    installed = " ".join(_instructions("RUN"))
    for package in ("clang", "bpftool", "libbpf-dev", "wireguard-tools", "wireguard-go", "python3"):
        assert f" {package} " in f" {installed} ", package
    assert "balancing datapath build" in installed
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {line.split()[0] for line in _instructions("COPY")}
    for package in packages["include"]:
        assert package.rstrip("*") in copied, f"the image does not copy the {package} package"
    assert "bpf" in copied  # the BPF sources the wheel carries


def test_both_charts_reference_the_project_image_the_lab_runs() -> None:
    for chart in ("hub", "member"):
        values = yaml.safe_load((REPO / "charts" / chart / "values.yaml").read_text())
        assert values["image"] == {"repository": podspec.project_image_repository(), "tag": "",
                                   "pullPolicy": "IfNotPresent"}
        app_version = yaml.safe_load((REPO / "charts" / chart / "Chart.yaml").read_text())["appVersion"]
        assert podspec.project_image() == f"{podspec.project_image_repository()}:{app_version}"
