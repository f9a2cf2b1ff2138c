"""The node's WireGuard keypair, generated on the node and kept in its state directory.

The private key file is mode 0600 in a mode 0700 directory and never leaves the node: only the public key
is printed or published. `wg genkey`/`wg pubkey` (wireguard-tools) do the curve25519 work.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from datapath.tunnel.errors import TunnelError
from datapath.tunnel.spec import check_key
from datapath.tunnel.wg import wg_binary

PRIVATE_KEY_FILE = "private.key"
PUBLIC_KEY_FILE = "public.key"


@dataclass(frozen=True)
class KeyStore:
    directory: Path

    @property
    def private_key_path(self) -> Path:
        return self.directory / PRIVATE_KEY_FILE

    @property
    def public_key_path(self) -> Path:
        return self.directory / PUBLIC_KEY_FILE

    def public_key(self) -> str | None:
        """The current public key, or None before the first `ensure()`."""
        if not self.private_key_path.exists():
            return None
        if self.public_key_path.exists():
            text = self.public_key_path.read_text().strip()
            with contextlib.suppress(ValueError):
                return check_key(text)
        public = derive_public_key(self.private_key_path.read_text().strip())
        _write_atomically(self.public_key_path, public + "\n", 0o644)
        return public

    def ensure(self) -> str:
        """Create the keypair on first use; return the public key. Tightens a private key file left too open."""
        self._ensure_directory()
        if self.private_key_path.exists():
            if self.private_key_path.stat().st_mode & 0o077:
                self.private_key_path.chmod(0o600)
            public = self.public_key()
            assert public is not None
            return public
        return self._write_new_keypair()

    def rotate(self) -> tuple[str | None, str]:
        """Replace the keypair with a fresh one; return (old public key, new public key)."""
        self._ensure_directory()
        old = self.public_key()
        return old, self._write_new_keypair()

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)

    def _write_new_keypair(self) -> str:
        private = _wg(["genkey"])
        public = derive_public_key(private)
        _write_atomically(self.private_key_path, private + "\n", 0o600)
        _write_atomically(self.public_key_path, public + "\n", 0o644)
        return public


def derive_public_key(private_key: str) -> str:
    return check_key(_wg(["pubkey"], input=private_key + "\n"))


def _wg(argv: list[str], input: str | None = None) -> str:
    result = subprocess.run([wg_binary(), *argv], input=input, capture_output=True, text=True)
    if result.returncode != 0:
        raise TunnelError(f"wg {argv[0]} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write a file that is never visible half-written, created with `mode` from the start."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)  # the umask may have narrowed it; never widened beyond `mode`
    temporary.replace(path)
