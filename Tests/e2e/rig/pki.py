"""A throwaway certificate authority and leaf certificates, made with the openssl CLI, for the TLS
tests and the suite's TLS variant (X402_E2E_VARIANT=tls-facilitators)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60)


def make_ca(folder: Path) -> Path:
    """ca.pem and ca.key in `folder` (a P-256 CA valid two days); returns ca.pem's path."""
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=x402-gateway e2e CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / "ca.pem"


def make_leaf(folder: Path, name: str) -> None:
    """A P-256 key and a certificate for localhost and 127.0.0.1 signed by the folder's CA."""
    (folder / f"{name}.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
    for suffix in ("pem", "key"):
        (folder / f"{name}.{suffix}").chmod(0o644)  # the gateway runs as another user in CI
