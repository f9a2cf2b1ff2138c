"""Cgroup levels count from the real cgroup2 root, whichever subtree a process sees mounted (table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datapath.lb.cgroups import cgroup2_mount_in

HOST = "30 25 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
POD_BINDS = (
    "221 217 0:38 /balancing-lab/nodes/n1 /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
    "222 221 0:38 /balancing-lab/nodes/n1 /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
ROWS = [
    ("the host's own mount", HOST, ("/sys/fs/cgroup/unified", 0)),
    ("a pod that sees its node's subtree over the host's mount", HOST + POD_BINDS, ("/sys/fs/cgroup/unified", 3)),
    ("a subtree mounted alone", POD_BINDS, ("/sys/fs/cgroup", 3)),
    ("a mount point with a space", "31 25 0:38 /a /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n",
     ("/mnt/my cgroups", 1)),
]


@pytest.mark.parametrize(("mountinfo", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_cgroup2_mount_and_its_level(mountinfo: str, expected: tuple[str, int]) -> None:
    mount, level = cgroup2_mount_in(mountinfo)
    assert (str(mount), level) == (expected[0], expected[1])
    assert isinstance(mount, Path)
