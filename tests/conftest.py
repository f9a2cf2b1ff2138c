from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab.state import LabState
from lab.testing import Federation
from tests.helpers.resources import CleanupRegistry, KernelResources

LAB_MEMBERS = 2
LAB_NODES_PER_CLUSTER = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `lab_teardown` take the lab down, so they run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)


@pytest.fixture(scope="session")
def federation() -> Iterator[Federation]:
    """The real lab: a hub and two member control planes with two nodes each, shared by the session.

    A lab that was already up when the session started is left up (several people may share it);
    one this session started is taken down at the end unless BALANCING_KEEP_LAB=1.
    """
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: run the README's test command as root")
    already_up = bool(LabState.load().clusters)
    lab = Federation.up(LAB_MEMBERS, LAB_NODES_PER_CLUSTER)
    yield lab
    if not already_up and os.environ.get("BALANCING_KEEP_LAB") != "1":
        lab.down()


@pytest.fixture
def cleanup() -> Iterator[CleanupRegistry]:
    registry = CleanupRegistry()
    yield registry
    failures = registry.run()
    assert not failures, f"cleanup failed: {failures}"


@pytest.fixture
def kernel(cleanup: CleanupRegistry) -> KernelResources:
    """Namespaces, cgroups, veths and bpffs dirs for one test; all removed afterwards."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root: run the README's test command as root")
    return KernelResources(cleanup)
