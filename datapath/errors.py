"""The one error root of the datapath, shared by the socket load balancer and the tunnels.

Operator-facing errors carry `user_facing = True`: the `balancing` dispatcher prints them as one
line, `balancing: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` with every control character (newline, NUL, ...) escaped, so a message stays one line."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


class DatapathError(RuntimeError):
    """Something an operator can act on; the message names what is wrong, on one line."""

    user_facing = True

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class StateError(DatapathError):
    """A desired state (socket LB or tunnel) is invalid; nothing was changed."""


class KernelError(DatapathError):
    """A bpf(2) call or a libbpf call failed."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
