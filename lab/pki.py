"""Certificates and keys for the lab control planes, made with the openssl command line."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from lab import host

DAYS = "3650"


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if not cert.exists():
        host.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                  "-out", str(cert), "-days", DAYS, "-subj", "/CN=balancing-lab-ca"])
    return cert, key


def ensure_signed(
    directory: Path,
    stem: str,
    ca: tuple[Path, Path],
    *,
    subject: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    client: bool = False,
) -> tuple[Path, Path]:
    """A key and a certificate signed by the lab CA, for serving (with SANs) or client auth."""
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    if cert.exists() and key.exists():
        return cert, key
    csr = directory / f"{stem}.csr"
    extensions = directory / f"{stem}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
    sans = [f"DNS:{name}" for name in dns_names] + [f"IP:{address}" for address in ip_addresses]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    extensions.write_text("\n".join(lines) + "\n")
    host.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
              "-subj", subject])
    host.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
              # a random serial, not -CAcreateserial: clusters sign in parallel, and a shared ca.srl races
              "-set_serial", f"0x{secrets.token_hex(16)}", "-out", str(cert), "-days", DAYS,
              "-extfile", str(extensions)])
    csr.unlink()
    extensions.unlink()
    return cert, key


def ensure_service_account_key(directory: Path) -> tuple[Path, Path]:
    private, public = directory / "sa.key", directory / "sa.pub"
    if not private.exists():
        host.run(["openssl", "genrsa", "-out", str(private), "2048"])
        host.run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)])
    return private, public
