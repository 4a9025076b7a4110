"""Fixtures shared by the servicekit tests."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from servicekit import tokens


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The token verifier's monotonic clock, moved by the test (``time.time`` stays real)."""
    fake = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: fake.now,
                                                        time=time.time))
    return fake
