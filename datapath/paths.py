"""Every path and setting the datapath reads from the environment, each read in one place.

An empty variable means the same as an unset one: the default applies.

| variable | default | what |
| --- | --- | --- |
| `BALANCING_CACHE` | `~/.cache/balancing` | compiled BPF objects (`bpf/`), provided tools (`bin/`) |
| `BALANCING_BPF_SOURCE` | `bpf/` of the checkout, else `<prefix>/share/balancing/bpf` | the BPF sources |
| `BALANCING_NODE_INDEX_DIR` | `/run/balancing/nodes` | `<node>.json` files that `--node NODE` resolves |
| `BALANCING_WIREGUARD_GO` | `$BALANCING_CACHE/bin/wireguard-go`, else PATH | the wireguard-go binary |
| `BALANCING_WG` | `wg` on PATH | the wg binary (wireguard-tools) |
| `BALANCING_WIREGUARD` | `auto` | `kernel`, `userspace` or `auto` |

The lab keeps its node index elsewhere (`/run/balancing-lab/nodes`) and passes it to the processes it
starts through `BALANCING_NODE_INDEX_DIR`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_NODE_INDEX_DIR = Path("/run/balancing/nodes")
HOST_STATE_DIR = Path("/var/lib/balancing")


def setting(name: str) -> str | None:
    """The value of `name`, or None when it is unset or empty."""
    return os.environ.get(name) or None


def cache_root() -> Path:
    configured = setting("BALANCING_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "balancing"


def bpf_source_dir() -> Path:
    """`BALANCING_BPF_SOURCE`, else `bpf/` beside the `datapath` package (a checkout), else the copy
    an installed package carries in `<prefix>/share/balancing/bpf`."""
    configured = setting("BALANCING_BPF_SOURCE")
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parent.parent / "bpf"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "balancing" / "bpf"


def node_index_dir() -> Path:
    configured = setting("BALANCING_NODE_INDEX_DIR")
    return Path(configured) if configured else DEFAULT_NODE_INDEX_DIR
