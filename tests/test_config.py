"""Settings read from the environment: a bad number is told plainly (which variable, what it
was), not as a traceback from deep inside a service's start; a mounted secret file's
trailing newline is not part of the secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servicekit.config import ConfigError, Settings


@pytest.mark.parametrize(("name", "value"), [
    ("ECOURT_MAX_ATTEMPTS", "five"), ("ECOURT_MAX_ATTEMPTS", "0"),
    ("ECOURT_CONSUMER_WORKERS", "2.5"), ("ECOURT_RETRY_BASE_SECONDS", "soon"),
    ("ECOURT_INBOX_RETENTION_DAYS", "nan"), ("ECOURT_IDEMPOTENCY_KEY_HOURS", "inf"),
    # below the floor: a retry or a redelivery could outlive the record that makes it harmless
    ("ECOURT_IDEMPOTENCY_KEY_HOURS", "0.01"), ("ECOURT_INBOX_RETENTION_DAYS", "0.5"),
    ("ECOURT_OUTBOX_RETENTION_DAYS", "-1"),
])
def test_a_bad_number_is_a_config_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str) -> None:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env("identity")


def test_good_numbers_and_a_secret_file_with_a_newline(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOURT_MAX_ATTEMPTS", " 7 ")
    monkeypatch.setenv("ECOURT_CONSUMER_WORKERS", "3")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("ECOURT_SERVICE_SECRET_FILE", str(secret))
    monkeypatch.setenv("ECOURT_INBOX_RETENTION_DAYS", "0")  # 0 keeps every row
    monkeypatch.setenv("ECOURT_IDEMPOTENCY_KEY_HOURS", "2")
    settings = Settings.from_env("identity")
    assert (settings.max_attempts, settings.consumer_workers) == (7, 3)
    assert settings.service_secret == "s3cret"
    assert settings.retention.inbox is None
    assert settings.idempotency_key_hours == 2


def test_a_secret_given_directly_loses_its_trailing_newline(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """``export ECOURT_SERVICE_SECRET="$(cat file)"`` keeps no newline, but an env file or a
    Secret written with one does: the services and the gateway must agree on the secret."""
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOURT_SERVICE_SECRET", "s3cret\n")
    assert Settings.from_env("identity").service_secret == "s3cret"


@pytest.mark.parametrize(("argv", "name", "value"), [
    (["migrate", "identity"], "ECOURT_MAX_ATTEMPTS", "five"),
    (["migrate", "identity"], "ECOURT_SERVICE_SECRET_FILE", "/nonexistent/secret"),
    (["migrate", "matters"], "ECOURT_WORKDAY_CALENDAR_FILE", "/nonexistent/calendar.json"),
    (["run"], "ECOURT_PORT", "eighty"),
    # told by ``ecourt serve`` itself, before gunicorn starts a worker (failed before: each
    # worker failed to boot with a traceback, and gunicorn exited 3)
    (["serve", "gateway"], "GATEWAY_CORS_ORIGINS", "*"),
    (["serve", "gateway"], "GATEWAY_RATE_LIMIT", "lots"),
    (["serve", "gateway"], "GATEWAY_RATE_SYNC_MS", "often"),
    (["serve", "gateway"], "GATEWAY_MAX_CONNECTIONS_PER_CLIENT", "-1"),
    (["serve", "gateway"], "GATEWAY_METRICS_FROM", "10.0.0.0/8,the office"),
    (["run"], "GATEWAY_METRICS_FROM", "10.0.0.300"),
    (["consume", "delivery"], "ECOURT_CONSUMER_PREPARE_THREADS", "many"),
    (["run"], "ECOURT_CONSUMER_PREPARE_THREADS", "0"),
    (["serve", "identity", "--no-migrate"], "IDENTITY_PREVIOUS_KEY_FILES", "/nonexistent/old.pem"),
])
def test_the_cli_says_which_setting_is_wrong_and_exits_2(tmp_path: Path, argv: list[str],
                                                        name: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOURT_", "GATEWAY_")) and not k.endswith("_DATABASE_URL")}
    env |= {"ECOURT_DATA_DIR": str(tmp_path), name: value}
    done = subprocess.run([sys.executable, "-m", "ecourt.cli", *argv], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert name in done.stderr
