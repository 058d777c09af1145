"""A test CA and a server certificate for 127.0.0.1, written as PEM files (trustme)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    """The CA's certificate (what clients trust) and the server's certificate and key."""

    ca: Path
    certificate: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A new CA and a certificate it signed for 127.0.0.1 and localhost, in ``directory``."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    issued.private_key_pem.write_to_path(str(files.key))
    files.certificate.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return files
