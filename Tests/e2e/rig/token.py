"""Compiles contracts/USDC.vy with Vyper, caching the output by source hash and compiler version.

The cache lives inside the virtual environment (or $E2E_CACHE_DIR), so a fresh venv compiles once
and later runs reuse the result; nothing compiled is committed.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "contracts" / "USDC.vy"


def _cache_dir() -> Path:
    return Path(os.environ.get("E2E_CACHE_DIR") or Path(sys.prefix) / "x402-e2e-cache")


def compiled_token() -> dict:
    """Returns {"abi": [...], "runtime": "0x..."} for the USDC-like token."""
    import vyper

    source = SOURCE.read_text()
    digest = hashlib.sha256(f"{vyper.__version__}\n{source}".encode()).hexdigest()[:16]
    cached = _cache_dir() / f"USDC-{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    out = vyper.compile_code(source, output_formats=["abi", "bytecode_runtime"])
    result = {"abi": out["abi"], "runtime": out["bytecode_runtime"]}
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(cached)
    return result
