"""identity's signing key: from ``IDENTITY_SIGNING_KEY_FILE`` (distributed; a mounted secret),
or generated once into the data folder (embedded). The private key never leaves identity.

Rotation: ``IDENTITY_PREVIOUS_KEY_FILES`` lists, comma-separated, PEM files of keys identity no
longer signs with but still publishes in its JWKS, so the tokens they signed keep verifying
until they expire instead of every user being signed out at the switch. Each file may hold the
private key (the old signing key's file as it was) or only its public key
(``openssl pkey -in old.pem -pubout``); a key is published under the ``kid`` it always had.
Removing a file from the list withdraws its key: verifiers refuse its tokens from their next
JWKS refresh. A file that cannot be read or is not an Ed25519 PEM key stops identity's start
with a ``ConfigError`` naming the setting and the file: a key skipped in silence would sign
people out, or keep a withdrawn key trusted, without anyone being told.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from servicekit.config import ConfigError, data_dir, read_file
from servicekit.tokens import SigningKey, VerificationKey

SIGNING_KEY_SETTING = "IDENTITY_SIGNING_KEY_FILE"
PREVIOUS_KEYS_SETTING = "IDENTITY_PREVIOUS_KEY_FILES"


def _read_pem(setting: str, path: str) -> bytes:
    """A PEM file's bytes (ASCII text: ``read_file`` says which setting when it cannot be)."""
    return read_file(setting, path).encode("ascii", errors="replace")


def load_signing_key() -> SigningKey:
    path = os.environ.get(SIGNING_KEY_SETTING)
    if path:
        pem = _read_pem(SIGNING_KEY_SETTING, path)
        try:
            return SigningKey.from_pem(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: a passphrase
            raise ConfigError(f"{SIGNING_KEY_SETTING}: {path} is not an Ed25519 private key "
                              f"in PEM without a passphrase: {exc}") from None
    local = data_dir() / "identity-signing-key.pem"
    if not local.exists():
        local.write_bytes(SigningKey.generate().to_pem())
        local.chmod(0o600)
    return SigningKey.from_pem(local.read_bytes())


def load_previous_keys() -> list[VerificationKey]:
    """The keys of ``IDENTITY_PREVIOUS_KEY_FILES``, in the order listed (none when unset)."""
    keys = []
    for path in (p.strip() for p in os.environ.get(PREVIOUS_KEYS_SETTING, "").split(",")):
        if not path:
            continue
        pem = _read_pem(PREVIOUS_KEYS_SETTING, path)
        try:
            keys.append(VerificationKey.from_pem(pem))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{PREVIOUS_KEYS_SETTING}: {path} is not an Ed25519 key in PEM "
                              f"(private without a passphrase, or public): {exc}") from None
    return keys


def jwks(signing: SigningKey, previous: Sequence[VerificationKey]) -> dict[str, Any]:
    """The JWKS identity publishes: the signing key's, then each previous key's (a previous
    key that is the signing key itself, listed by mistake, is published once)."""
    published = [signing.verification_key()]
    for key in previous:
        if key.kid not in {k.kid for k in published}:
            published.append(key)
    return {"keys": [key.jwk() for key in published]}


def load_jwks() -> dict[str, Any]:
    """The JWKS from the settings, for a verifier in identity's own process (the embedded tier,
    and identity's own routes when distributed): it trusts what identity publishes."""
    return jwks(load_signing_key(), load_previous_keys())
