"""Host primitives the lab (and the tests) build on: network namespaces, veths, cgroups, processes.

Everything here is idempotent and tolerant of things that are already gone, so teardown after a
crash works from a state file alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from datapath import stop_process

CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
BPFFS_ROOT = Path("/sys/fs/bpf")
NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    user_facing = True


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    """Run a command and return its stdout; raise LabError with its stderr on failure."""
    result = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf unless it is mounted already."""
    with open("/proc/mounts") as mounts:
        if any(line.split()[1] == str(BPFFS_ROOT) and line.split()[2] == "bpf" for line in mounts):
            return
    BPFFS_ROOT.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "bpf", "bpf", str(BPFFS_ROOT)])


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_add(name: str) -> None:
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def netns_delete(name: str) -> None:
    if netns_exists(name):
        kill_netns_processes(name)
        run(["ip", "netns", "delete", name], check=False)


def netns_pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(pid) for pid in out.split()]


def kill_netns_processes(name: str) -> None:
    for pid in netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a command in a network namespace (not `ip netns exec`: it remounts /sys)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--"] if netns else []


def cgroup_joiner(cgroup: Path | None) -> Callable[[], None] | None:
    """A preexec_fn that moves the child into `cgroup` before exec, so all its descendants are there too."""
    if cgroup is None:
        return None
    procs = str(cgroup / "cgroup.procs")

    def join() -> None:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))

    return join


def ns_run(netns: str | None, argv: Sequence[str], *, check: bool = True) -> str:
    """Run a command inside a network namespace and return its stdout."""
    return run([*netns_prefix(netns), *argv], check=check)


def run_in(
    argv: Sequence[str], *, netns: str | None = None, cgroup: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a short command in a network namespace and a cgroup, capture its output, do not check it."""
    return subprocess.run([*netns_prefix(netns), *argv], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cgroup_joiner(cgroup))


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    return subprocess.run(argv, capture_output=True).returncode == 0


def cgroup_create(path: Path) -> Path:
    if not str(path).startswith(str(CGROUP2_ROOT) + "/"):
        raise LabError(f"refusing to use cgroup {path}: lab cgroups live under {CGROUP2_ROOT}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cgroup_pids(path: Path) -> list[int]:
    pids: list[int] = []
    if not path.exists():
        return pids
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.extend(int(pid) for pid in procs.read_text().split())
    return pids


def cgroup_remove(path: Path, timeout: float = 5.0) -> None:
    """Kill every process in the cgroup subtree, then remove the subtree, deepest first."""
    if not path.exists():
        return
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(path)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        children = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        try:
            for child in [*children, path]:
                if child.exists():
                    child.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(f"cannot remove cgroup {path}: processes {cgroup_pids(path)} remain") from None
            time.sleep(0.05)


def spawn(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    cgroup: Path | None = None,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in a network namespace and a cgroup.

    The child joins the cgroup before exec, so every descendant is accounted there too, and it gets
    its own session so that it survives the caller.
    """
    stdout = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [*netns_prefix(netns), *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            preexec_fn=cgroup_joiner(cgroup),
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    finally:
        if log:
            stdout.close()  # type: ignore[union-attr]


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; a pid that is already gone is fine."""
    stop_process(pid, timeout=timeout)
