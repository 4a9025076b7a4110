"""The embedded suite (``ecourt run``) takes the gateway's rate limits from the same
environment variables as the distributed gateway (found by schemathesis: it ignored them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecourt.embedded import Suite


def test_the_embedded_gateway_reads_its_rate_limits_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "100000")
    monkeypatch.setenv("GATEWAY_RATE_WINDOW", "30")
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))  # Suite sets it; monkeypatch restores
    limiter = Suite(tmp_path / "data").gateway.rate_limiter
    assert (limiter.limit, limiter.window) == (100000, 30.0)  # type: ignore[attr-defined]

    given = Suite(tmp_path / "data2", rate_limit=5, rate_window=1.0).gateway.rate_limiter
    assert (given.limit, given.window) == (5, 1.0)  # type: ignore[attr-defined]
