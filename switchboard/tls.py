"""Certificates for a local TLS broker and its clients, made with the `openssl` command.

For development and tests only: a throw-away certificate authority, and certificates it
signs for 127.0.0.1 (the broker) or for a client (mutual TLS). Keys are unencrypted PEM
(PKCS#8), which both Kafka's PEM keystore and librdkafka read as they are.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from contract.errors import ServiceUnavailable

DAYS = "30"


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key."""

    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    if shutil.which("openssl") is None:
        raise ServiceUnavailable("the openssl command is needed to make certificates")
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Pem:
    """A self-signed certificate authority `name` in `directory` (`name`.pem, `name`.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Pem(directory / f"{name}.pem", directory / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
        "-subj", f"/CN={name}", "-keyout", ca.key, "-out", ca.cert,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return ca


def issue(ca: Pem, directory: Path, name: str, *, server: bool) -> Pem:
    """A certificate signed by `ca`: for a server on 127.0.0.1/localhost, or a client."""
    issued = Pem(directory / f"{name}.pem", directory / f"{name}.key")
    request = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    lines = [f"extendedKeyUsage={usage}"]
    if server:  # clients check the address they dialled against these names
        lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes",
        "-subj", f"/CN={name}", "-keyout", issued.key, "-out", request,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca.cert, "-CAkey", ca.key,
        "-CAcreateserial", "-days", DAYS, "-extfile", extensions, "-out", issued.cert,
    )  # fmt: skip
    request.unlink()
    extensions.unlink()
    return issued
