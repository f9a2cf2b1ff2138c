"""A baseline revision of this repository as a directory tree, for before/after benchmarks in one run."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path


def export_tree(repo: Path, revision: str, into: Path) -> Path:
    """`git archive REVISION` unpacked under `into`; run it with PYTHONPATH pointing there."""
    archive = subprocess.run(["git", "archive", revision], cwd=repo, capture_output=True, check=True).stdout
    tree = into / revision.replace("/", "_")
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as bundle:
        bundle.extractall(tree, filter="data")
    return tree
