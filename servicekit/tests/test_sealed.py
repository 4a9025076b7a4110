"""servicekit.sealed: the SMS key, its rotation (``NEW,OLD``), the ``_FILE`` variant and the
embedded tier's fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from servicekit import sealed
from servicekit.sealed import derived_key, seal, unseal

SERVICE_SECRET = "the-service-secret"  # noqa: S105 - a test value
PHONE = "13800138000"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ECOURT_SMS_KEY", "ECOURT_SMS_KEY_FILE", "ECOURT_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sealed, "_warned", False)


def key() -> str:
    return Fernet.generate_key().decode()


def test_a_value_sealed_under_the_old_key_opens_after_rotation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = key(), key()
    monkeypatch.setenv("ECOURT_SMS_KEY", old)
    token = seal(PHONE, SERVICE_SECRET)
    monkeypatch.setenv("ECOURT_SMS_KEY", f"{new},{old}")
    assert unseal(token, SERVICE_SECRET) == PHONE


def test_the_first_key_seals(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = key(), key()
    monkeypatch.setenv("ECOURT_SMS_KEY", f"{new}, {old}")
    token = seal(PHONE, SERVICE_SECRET)
    monkeypatch.setenv("ECOURT_SMS_KEY", new)
    assert unseal(token, SERVICE_SECRET) == PHONE
    monkeypatch.setenv("ECOURT_SMS_KEY", old)
    with pytest.raises(ValueError, match="cannot be opened"):
        unseal(token, SERVICE_SECRET)


def test_a_value_sealed_under_a_key_no_longer_listed_cannot_be_opened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = key(), key()
    monkeypatch.setenv("ECOURT_SMS_KEY", old)
    token = seal(PHONE, SERVICE_SECRET)
    monkeypatch.setenv("ECOURT_SMS_KEY", new)
    with pytest.raises(ValueError, match="cannot be opened"):
        unseal(token, SERVICE_SECRET)


def test_the_service_secret_does_not_open_what_the_sms_key_sealed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOURT_SMS_KEY", key())
    token = seal(PHONE, SERVICE_SECRET)
    monkeypatch.delenv("ECOURT_SMS_KEY")
    with pytest.raises(ValueError):
        unseal(token, SERVICE_SECRET)


def test_the_keys_come_from_a_file_separated_by_whitespace(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old, new = key(), key()
    monkeypatch.setenv("ECOURT_SMS_KEY", old)
    token = seal(PHONE, SERVICE_SECRET)
    path = tmp_path / "sms_key"
    path.write_text(f"{new}\n{old}\n", encoding="utf-8")
    monkeypatch.setenv("ECOURT_SMS_KEY_FILE", str(path))
    monkeypatch.setenv("ECOURT_SMS_KEY", key())  # the file wins, as for every *_FILE secret
    assert unseal(token, SERVICE_SECRET) == PHONE
    fresh = seal(PHONE, SERVICE_SECRET)
    monkeypatch.delenv("ECOURT_SMS_KEY_FILE")
    monkeypatch.setenv("ECOURT_SMS_KEY", new)
    assert unseal(fresh, SERVICE_SECRET) == PHONE


def test_a_key_that_is_not_a_fernet_key_is_refused_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOURT_SMS_KEY", f"{key()},not-a-key")
    with pytest.raises(ValueError, match="key 2 is not a Fernet key") as excinfo:
        seal(PHONE, SERVICE_SECRET)
    assert "not-a-key" not in str(excinfo.value)


def test_moving_off_the_fallback_keeps_what_it_sealed(monkeypatch: pytest.MonkeyPatch) -> None:
    token = seal(PHONE, SERVICE_SECRET)  # no ECOURT_SMS_KEY: the key derived from the secret
    new = key()
    monkeypatch.setenv("ECOURT_SMS_KEY", f"{new},{derived_key(SERVICE_SECRET)}")
    assert unseal(token, SERVICE_SECRET) == PHONE
    monkeypatch.setenv("ECOURT_SMS_KEY", new)
    with pytest.raises(ValueError):
        unseal(token, SERVICE_SECRET)


def test_the_fallback_warns_once_outside_the_embedded_tier(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="servicekit.sealed")
    assert unseal(seal(PHONE, SERVICE_SECRET), SERVICE_SECRET) == PHONE
    assert not caplog.records  # embedded tier (memory:// bus): the fallback is the default

    monkeypatch.setenv("ECOURT_BROKER_URL", "amqp://rabbitmq:5672//")
    assert unseal(seal(PHONE, SERVICE_SECRET), SERVICE_SECRET) == PHONE
    messages = [r.getMessage() for r in caplog.records]  # two calls, one warning
    assert len(messages) == 1 and "ECOURT_SMS_KEY is not set" in messages[0]

    caplog.clear()
    monkeypatch.setattr(sealed, "_warned", False)
    monkeypatch.setenv("ECOURT_SMS_KEY", key())
    seal(PHONE, SERVICE_SECRET)
    assert not caplog.records
