from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers.resources import CleanupRegistry, KernelResources


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
