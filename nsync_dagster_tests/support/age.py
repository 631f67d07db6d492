"""age keys and random files for the encryption tests (``unit/test_age_files.py``,
``integration/test_crypto.py``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pyrage import x25519

MiB = 1024 * 1024


def keypair() -> tuple[str, str]:
    """A new age X25519 identity: (private key, public key)."""
    ident = x25519.Identity.generate()
    return str(ident), str(ident.to_public())


def random_file(path: Path, mib: int) -> str:
    """Write ``mib`` MiB of random bytes to ``path``; their SHA-256 (hex)."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(MiB)
            h.update(block)
            f.write(block)
    return h.hexdigest()
