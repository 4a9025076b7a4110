"""identity's signing key: from ``IDENTITY_SIGNING_KEY_FILE`` (distributed; a mounted secret),
or generated once into the data folder (embedded). The private key never leaves identity."""

from __future__ import annotations

import os
from pathlib import Path

from servicekit.config import data_dir
from servicekit.tokens import SigningKey


def load_signing_key() -> SigningKey:
    path = os.environ.get("IDENTITY_SIGNING_KEY_FILE")
    if path:
        return SigningKey.from_pem(Path(path).read_bytes())
    local = data_dir() / "identity-signing-key.pem"
    if not local.exists():
        local.write_bytes(SigningKey.generate().to_pem())
        local.chmod(0o600)
    return SigningKey.from_pem(local.read_bytes())
