"""Errors of the socket load balancer. Operator-facing ones carry `user_facing = True`."""

from __future__ import annotations


class DatapathError(RuntimeError):
    """Something an operator can act on; the message names what is wrong."""

    user_facing = True


class StateError(DatapathError):
    """The desired state is invalid; nothing was written to the kernel."""


class KernelError(DatapathError):
    """A bpf(2) call or a libbpf call failed."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
