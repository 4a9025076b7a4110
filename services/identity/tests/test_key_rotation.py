"""Rotating identity's signing key without signing everyone out: the new key signs, the old one
(``IDENTITY_PREVIOUS_KEY_FILES``) is still published until it is withdrawn, and a previous-key
file that cannot be used stops identity's start naming it.

identity is started here as ``ecourt serve identity`` starts it (``make_runtime``, identity's
own verifier from ``local_verifier``, ``create_app``), once per "deployment", on one database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ecourt.runtime import local_verifier, make_runtime
from servicekit.config import ConfigError, Settings
from servicekit.service import Runtime
from servicekit.tokens import InvalidToken, SigningKey, TokenVerifier
from services.identity.app import SERVICE, create_app
from services.identity.tests.conftest import Identity

SETTINGS = ("IDENTITY_SIGNING_KEY_FILE", "IDENTITY_PREVIOUS_KEY_FILES",
            "IDENTITY_TRUST_FORWARDED", "IDENTITY_REQUIRE_CAPTCHA", "IDENTITY_DATABASE_URL",
            "ECOURT_ADMIN_PASSWORD")


@pytest.fixture
def deploy(database_url: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``deploy(signing=..., previous=[...])`` starts identity with those key files."""
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    started: list[Runtime] = []

    def start(signing: Path, previous: list[Path] | None = None) -> Identity:
        monkeypatch.setenv("IDENTITY_SIGNING_KEY_FILE", str(signing))
        monkeypatch.setenv("IDENTITY_PREVIOUS_KEY_FILES", ",".join(map(str, previous or [])))
        rt = make_runtime(SERVICE, Settings.from_env("identity", database_url=database_url),
                          verifier=None)
        started.append(rt)
        rt.verifier = local_verifier()
        rt.extras["captcha_after_failure"] = False
        return Identity(create_app(rt), rt)

    yield start
    for rt in started:
        rt.db.dispose()


def _pem(tmp_path: Path, name: str, key: SigningKey, *, public: bool = False) -> Path:
    path = tmp_path / name
    if public:
        path.write_bytes(key.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    else:
        path.write_bytes(key.to_pem())
    return path


def _kids(identity: Identity) -> list[str]:
    resp = identity.call("GET", "/.well-known/jwks.json")
    assert resp.status_code == 200
    return [k["kid"] for k in resp.get_json()["keys"]]


def _gateway_verifier(identity: Identity) -> TokenVerifier:
    """A verifier as the gateway and the other services hold one: fed by the JWKS route."""
    return TokenVerifier(lambda: identity.call("GET", "/.well-known/jwks.json").get_json())


@pytest.mark.parametrize("old_as", ["private", "public"])
def test_a_token_signed_before_a_rotation_keeps_working_until_the_old_key_is_withdrawn(
        deploy, tmp_path: Path, old_as: str) -> None:  # type: ignore[no-untyped-def]
    old, new = SigningKey.generate(), SigningKey.generate()
    before = deploy(_pem(tmp_path, "old.pem", old))
    person, account = before.register()
    signed_in = before.tokens(person["phone"])
    assert jwt.get_unverified_header(signed_in["access_token"])["kid"] == old.kid

    # rotation: the new key signs, the old one (either half of it) is still published
    previous = _pem(tmp_path, "previous.pem", old, public=old_as == "public")
    rotated = deploy(_pem(tmp_path, "new.pem", new), [previous])
    assert _kids(rotated) == [new.kid, old.kid]  # the kid each key always had
    me = rotated.call("GET", "/accounts/me", token=signed_in["access_token"])
    assert me.status_code == 200, me.get_data(as_text=True)
    assert me.get_json()["id"] == account["id"]
    elsewhere = _gateway_verifier(rotated)
    assert elsewhere.verify(signed_in["access_token"])["sub"] == account["id"]
    # new tokens, a refresh of the old sign-in's included, carry the new key's kid
    for fresh in (rotated.tokens(person["phone"]),
                  rotated.call("POST", "/tokens/refresh",
                               json={"refresh_token": signed_in["refresh_token"]}).get_json()):
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new.kid
        assert elsewhere.verify(fresh["access_token"])["sub"] == account["id"]

    # withdrawal: the old key is no longer listed
    withdrawn = deploy(_pem(tmp_path, "new.pem", new))
    assert _kids(withdrawn) == [new.kid]
    assert withdrawn.call("GET", "/accounts/me",
                          token=signed_in["access_token"]).status_code == 401
    with pytest.raises(InvalidToken):
        _gateway_verifier(withdrawn).verify(signed_in["access_token"])


def test_the_signing_key_listed_as_previous_too_is_published_once(deploy, tmp_path: Path
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    key = SigningKey.generate()
    pem = _pem(tmp_path, "key.pem", key)
    assert _kids(deploy(pem, [pem])) == [key.kid]


BROKEN_PUBLIC = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"


@pytest.mark.parametrize("content", [None, b"", b"not a key\n", BROKEN_PUBLIC])
def test_a_previous_key_file_that_cannot_be_used_stops_the_start_naming_it(
        deploy, tmp_path: Path, content: bytes | None) -> None:  # type: ignore[no-untyped-def]
    good = _pem(tmp_path, "old-1.pem", SigningKey.generate())
    bad = tmp_path / "old-2.pem"  # None: the file is missing
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(ConfigError, match=r"IDENTITY_PREVIOUS_KEY_FILES.*old-2\.pem"):
        deploy(_pem(tmp_path, "new.pem", SigningKey.generate()), [good, bad])


def test_a_previous_key_that_is_not_ed25519_stops_the_start_naming_it(
        deploy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "ecdsa.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match=r"IDENTITY_PREVIOUS_KEY_FILES.*ecdsa\.pem"):
        deploy(_pem(tmp_path, "new.pem", SigningKey.generate()), [other])


def test_the_embedded_tier_stops_at_a_previous_key_file_it_cannot_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ecourt run`` builds the suite (its verifier holds identity's JWKS) before serving;
    the CLI prints the ConfigError and exits 2."""
    from ecourt.embedded import Suite

    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))  # Suite sets it; restored after
    monkeypatch.delenv("IDENTITY_SIGNING_KEY_FILE", raising=False)
    monkeypatch.setenv("IDENTITY_PREVIOUS_KEY_FILES", f" {tmp_path / 'gone.pem'} ")
    with pytest.raises(ConfigError, match=r"IDENTITY_PREVIOUS_KEY_FILES.*gone\.pem"):
        Suite(tmp_path / "data")
