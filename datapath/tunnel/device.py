"""The node's WireGuard interface: kernel WireGuard when the kernel has it, else wireguard-go.

wireguard-go runs inside the node's network namespace, with a private /run/wireguard (see wg.py), as a
daemon of its own: it is reparented to init and in its own session, so it outlives the tunnel manager
that started it. Its pid and start time are recorded in `tunnel/runtime.json`; `down` stops exactly
that process. The interface is only ever created once: a manager that restarts finds it and adopts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from datapath.paths import cache_root, setting
from datapath.process import process_start_time, stop_process
from datapath.tunnel import netlink
from datapath.tunnel.errors import TunnelError
from datapath.tunnel.node import TunnelNode
from datapath.tunnel.wg import NamespaceCommand, WgControl

KERNEL = "kernel"
USERSPACE = "userspace"
RUNTIME_FILE = "runtime.json"
DAEMON_LOG = "wireguard-go.log"
START_TIMEOUT = 5.0
# Join the cgroup (if any), start the program in the background with its output in the log, print its pid.
_DAEMON_LAUNCHER = (
    'log="$1"; procs="$2"; shift 2; if [ -n "$procs" ]; then echo $$ > "$procs" || exit 1; fi; '
    '"$@" </dev/null >>"$log" 2>&1 & echo $!'
)


def wireguard_go_binary() -> str:
    """$BALANCING_WIREGUARD_GO, else $BALANCING_CACHE/bin/wireguard-go, else wireguard-go on PATH."""
    configured = setting("BALANCING_WIREGUARD_GO")
    if configured:
        if not os.access(configured, os.X_OK):
            raise TunnelError(f"BALANCING_WIREGUARD_GO={configured} is not an executable file")
        return configured
    cached = cache_root() / "bin" / "wireguard-go"
    if os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("wireguard-go")
    if found:
        return found
    raise TunnelError(
        "kernel WireGuard is not available and wireguard-go was not found (looked at $BALANCING_WIREGUARD_GO, "
        f"{cached} and PATH); run lab/install.sh to fetch it"
    )


@dataclass(frozen=True)
class Runtime:
    implementation: str
    interface: str
    pid: int | None = None
    start_time: int | None = None  # of pid, from /proc/PID/stat; guards against a recycled pid
    binary: str | None = None


class TunnelDevice:
    def __init__(self, node: TunnelNode, interface: str) -> None:
        self.node = node
        self.interface = interface

    @property
    def run_dir(self) -> Path:
        return self.node.tunnel_dir / "run"

    @property
    def runtime_path(self) -> Path:
        return self.node.tunnel_dir / RUNTIME_FILE

    @property
    def socket_path(self) -> Path:
        return self.run_dir / f"{self.interface}.sock"

    def runtime(self) -> Runtime | None:
        try:
            raw = json.loads(self.runtime_path.read_text())
        except (OSError, ValueError):
            return None
        return Runtime(**raw) if isinstance(raw, dict) else None

    def control(self, runtime: Runtime | None = None) -> WgControl:
        runtime = runtime or self.runtime()
        userspace = runtime is None or runtime.implementation == USERSPACE
        return WgControl(self.interface, NamespaceCommand(self.node.netns, self.run_dir if userspace else None))

    def link_index(self) -> int | None:
        with netlink.netlink(self.node.netns) as nl:
            return netlink.link_index(nl, self.interface)

    def daemon_alive(self, runtime: Runtime) -> bool:
        return runtime.pid is not None and process_start_time(runtime.pid) == runtime.start_time

    def current(self) -> Runtime | None:
        """The running interface, or None. Adopts an interface that lost its runtime file."""
        self.node.check_netns()
        with netlink.netlink(self.node.netns) as nl:
            index = netlink.link_index(nl, self.interface)
            kind = netlink.link_kind(nl, index) if index is not None else None
        if index is None:
            return None
        runtime = self.runtime()
        if kind == "wireguard":
            return runtime if runtime and runtime.implementation == KERNEL else Runtime(KERNEL, self.interface)
        if runtime and runtime.implementation == USERSPACE and self.daemon_alive(runtime):
            return runtime
        if self.socket_path.exists():
            pid = _find_daemon(self.interface, self.node.netns)
            return Runtime(USERSPACE, self.interface, pid, process_start_time(pid) if pid else None)
        raise TunnelError(
            f"node {self.node.name}: interface {self.interface} exists but is not a WireGuard interface this "
            "tunnel manager runs (no kernel WireGuard link, no wireguard-go socket); remove it or pick another "
            "interface name"
        )

    def ensure(self) -> tuple[Runtime, bool]:
        """The running interface, creating it if there is none; (runtime, created)."""
        runtime = self.current()
        if runtime is not None:
            if runtime != self.runtime():
                self._save(runtime)
            return runtime, False
        self.node.tunnel_dir.mkdir(parents=True, exist_ok=True)
        self.node.tunnel_dir.chmod(0o700)
        mode = setting("BALANCING_WIREGUARD") or "auto"
        if mode not in ("auto", KERNEL, USERSPACE):
            raise TunnelError(f"BALANCING_WIREGUARD={mode!r}: expected auto, kernel or userspace")
        if mode != USERSPACE and self._create_kernel_link(required=mode == KERNEL):
            runtime = Runtime(KERNEL, self.interface)
        else:
            runtime = self._start_wireguard_go()
        self._save(runtime)
        return runtime, True

    def _create_kernel_link(self, *, required: bool) -> bool:
        argv = ["ip", *(["-n", self.node.netns] if self.node.netns else []), "link", "add", self.interface]
        result = subprocess.run([*argv, "type", "wireguard"], capture_output=True, text=True)
        if result.returncode == 0:
            return True
        if required:
            raise TunnelError(f"kernel WireGuard is not available: {result.stderr.strip()}")
        return False

    def _start_wireguard_go(self) -> Runtime:
        binary = wireguard_go_binary()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a daemon that was killed
        log = self.node.tunnel_dir / DAEMON_LOG
        procs = _daemon_cgroup(self.node.cgroup)
        command = NamespaceCommand(self.node.netns, self.run_dir).argv([binary, "-f", self.interface])
        launcher = subprocess.run(
            ["sh", "-c", _DAEMON_LAUNCHER, "sh", str(log), str(procs or ""), *command],
            capture_output=True,
            text=True,
            start_new_session=True,
            env={**os.environ, "LOG_LEVEL": "error"},
        )
        if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
            raise TunnelError(f"cannot start wireguard-go: {launcher.stderr.strip() or launcher.stdout.strip()}")
        pid = int(launcher.stdout.strip())
        runtime = Runtime(USERSPACE, self.interface, pid, process_start_time(pid), binary)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.socket_path.exists() and self.link_index() is not None:
                return runtime
            if process_start_time(pid) is None:
                break
            time.sleep(0.01)
        stop_process(pid, runtime.start_time)
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        raise TunnelError(
            f"wireguard-go did not bring up {self.interface} in node {self.node.name} within {START_TIMEOUT:.0f}s"
            + (f": {' | '.join(tail)}" if tail else "")
        )

    def _save(self, runtime: Runtime) -> None:
        temporary = self.runtime_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(runtime), indent=2) + "\n")
        temporary.replace(self.runtime_path)

    def down(self) -> bool:
        """Remove the interface (stopping wireguard-go by its pid) and the manager's routes; keys stay."""
        self.node.check_netns()
        runtime = self.current()
        removed = runtime is not None
        if runtime is not None and runtime.implementation == KERNEL:
            argv = ["ip", *(["-n", self.node.netns] if self.node.netns else []), "link", "del", self.interface]
            subprocess.run(argv, capture_output=True, check=False)
        elif runtime is not None and runtime.pid is not None:
            stop_process(runtime.pid, runtime.start_time)
        with netlink.netlink(self.node.netns) as nl:
            for route in netlink.dump_routes(nl)[0].values():
                netlink.delete_route(nl, route)
        if self.link_index() is not None:
            raise TunnelError(f"node {self.node.name}: interface {self.interface} is still there after down")
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.runtime_path.unlink()
        return removed


def _daemon_cgroup(cgroup: Path | None) -> Path | None:
    """The cgroup.procs file wireguard-go joins: the node's `system` cgroup when it has one."""
    if cgroup is None:
        return None
    target = cgroup / "system" if (cgroup / "system").is_dir() else cgroup
    return target / "cgroup.procs"


def _find_daemon(interface: str, netns: str | None) -> int | None:
    """The pid of `wireguard-go -f INTERFACE` running in the node's network namespace, if any."""
    try:
        wanted_netns = os.stat(f"/run/netns/{netns}" if netns else "/proc/1/ns/net").st_ino
    except OSError:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if len(argv) < 3 or not argv[0].endswith(b"wireguard-go") or argv[-2:] != [interface.encode(), b""]:
                continue
            if os.stat(entry / "ns" / "net").st_ino == wanted_netns:
                return int(entry.name)
        except OSError:
            continue
    return None
