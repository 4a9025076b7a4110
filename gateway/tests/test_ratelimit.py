"""Rate limits: memory and Redis limiters, and the gateway's 429."""

from __future__ import annotations

import logging
import time
import uuid
from types import SimpleNamespace

import pytest
from werkzeug.test import Client

from gateway import ratelimit
from gateway.ratelimit import MemoryRateLimiter, RedisRateLimiter
from gateway.synced_limiter import SyncedRateLimiter
from gateway.tests.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_or_skip():  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


def test_memory_limiter_window():
    limiter = MemoryRateLimiter(limit=2, window_seconds=0.3)
    assert limiter.hit("a") == (True, 0.0)
    assert limiter.hit("a") == (True, 0.0)
    allowed, retry = limiter.hit("a")
    assert not allowed and 0 < retry <= 0.3
    assert limiter.hit("b")[0]
    time.sleep(0.35)
    assert limiter.hit("a")[0]



@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The memory limiter's clock, a stand-in the test moves: ``clock[0]`` is now."""
    now = [1000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_memory_limiter_holds_at_most_100_000_windows_under_a_flood_of_addresses(clock):
    limiter = MemoryRateLimiter(limit=600, window_seconds=60)
    for i in range(100_000):  # 100,000 addresses in 10 s, each window still open
        clock[0] += 0.0001
        assert limiter.hit(f"a-{i}") == (True, 0.0)
    clock[0] += 20.0  # the oldest window closes in 30 s
    for i in range(1_000):  # more addresses: refused, not held, not let through uncounted
        allowed, retry = limiter.hit(f"b-{i}")
        assert not allowed and retry == pytest.approx(30.0, abs=0.01)
    assert len(limiter._windows) == 100_000 and "b-0" not in limiter._windows


def test_memory_limiter_at_its_cap_drops_closed_windows_oldest_first(clock, caplog):
    limiter = MemoryRateLimiter(limit=1, window_seconds=60, max_windows=3)
    start = clock[0]
    for i, key in enumerate(("a", "b", "c")):  # open at start, +10 s, +20 s
        clock[0] = start + 10 * i
        assert limiter.hit(key) == (True, 0.0)
    clock[0] = start + 45
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        assert limiter.hit("d") == (False, pytest.approx(15.0))  # until a's window closes
    assert "refusing new clients" in caplog.text
    assert not limiter.hit("b")[0]  # the clients held keep their windows and counts
    clock[0] = start + 61  # a's window has closed, b's has not
    assert limiter.hit("d") == (True, 0.0)
    assert list(limiter._windows) == ["b", "c", "d"]
    assert not limiter.hit("d")[0]  # let in at the cap, limited like any other
    assert limiter.hit("e")[0] is False

def test_gateway_answers_429_with_retry_after(build, upstream, token):
    gw = Client(build({"svc": upstream}, rate_limiter=MemoryRateLimiter(3, 60)))
    for _ in range(3):
        assert gw.get("/api/svc/healthz").status_code == 200
    resp = gw.get("/api/svc/healthz", headers={"X-Request-ID": "rl-1"})
    assert resp.status_code == 429
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["type"].endswith("/rate-limited")
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["X-Request-ID"] == "rl-1"
    # another address, and an authenticated user, have their own budgets
    other_ip = gw.get("/api/svc/healthz", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert other_ip.status_code == 200
    assert gw.get("/api/svc/echo", headers=auth(token("u1"))).status_code == 200
    # the gateway's liveness probe is never limited
    assert gw.get("/healthz").status_code == 200


def test_bad_tokens_count_against_the_address(build, upstream):
    gw = Client(build({"svc": upstream}, rate_limiter=MemoryRateLimiter(2, 60)))
    assert gw.get("/api/svc/echo", headers=auth("junk")).status_code == 401
    assert gw.get("/api/svc/echo", headers=auth("junk")).status_code == 401
    assert gw.get("/api/svc/echo", headers=auth("junk")).status_code == 429


def test_limit_is_per_subject_across_addresses(build, upstream, token):
    gw = Client(build({"svc": upstream}, rate_limiter=MemoryRateLimiter(2, 60)))
    tok = token("same-user")
    for ip in ("10.0.0.1", "10.0.0.2"):
        resp = gw.get("/api/svc/echo", headers=auth(tok), environ_base={"REMOTE_ADDR": ip})
        assert resp.status_code == 200
    resp = gw.get("/api/svc/echo", headers=auth(tok), environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert resp.status_code == 429


def test_forwarded_for_used_only_when_trusted(build, upstream):
    for trusted, expected in ((False, 429), (True, 200)):
        gw = Client(build({"svc": upstream}, rate_limiter=MemoryRateLimiter(1, 60),
                          trust_forwarded=trusted))
        assert gw.get("/api/svc/healthz", headers={"X-Forwarded-For": "1.1.1.1"}).status_code \
            == 200
        resp = gw.get("/api/svc/healthz", headers={"X-Forwarded-For": "2.2.2.2"})
        assert resp.status_code == expected


@pytest.mark.real
def test_redis_limiter_against_real_redis(build, upstream):
    client = _redis_or_skip()
    prefix = f"ecourt:rl:test:{uuid.uuid4().hex}:"
    try:
        limiter = RedisRateLimiter(REDIS_URL, limit=3, window_seconds=30, prefix=prefix)
        assert [limiter.hit("k")[0] for _ in range(3)] == [True, True, True]
        allowed, retry = limiter.hit("k")
        assert not allowed and 0 < retry <= 30
        assert limiter.hit("other")[0]
        ttl = client.pttl(prefix + "k")
        assert 0 < ttl <= 30_000

        gw = Client(build({"svc": upstream}, rate_limiter=RedisRateLimiter(
            REDIS_URL, limit=2, window_seconds=30, prefix=prefix)))
        assert gw.get("/api/svc/healthz").status_code == 200
        assert gw.get("/api/svc/healthz").status_code == 200
        resp = gw.get("/api/svc/healthz")
        assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 30
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        assert not list(client.scan_iter(match=prefix + "*"))


@pytest.mark.real
def test_redis_limiter_window_expires(build):
    client = _redis_or_skip()
    prefix = f"ecourt:rl:test:{uuid.uuid4().hex}:"
    try:
        limiter = RedisRateLimiter(REDIS_URL, limit=1, window_seconds=0.3, prefix=prefix)
        assert limiter.hit("k")[0] and not limiter.hit("k")[0]
        time.sleep(0.4)
        assert limiter.hit("k")[0]
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def test_redis_limiter_fails_open_with_a_warning(caplog):
    port = 1  # nothing listens there
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", limit=1, window_seconds=60,
                               socket_timeout=0.2)
    caplog.set_level(logging.WARNING, logger="gateway.ratelimit")
    assert limiter.hit("k") == (True, 0.0)
    assert limiter.hit("k") == (True, 0.0)
    warnings = [r for r in caplog.records if r.name == "gateway.ratelimit"]
    assert len(warnings) == 1 and "fail open" in warnings[0].getMessage()


def test_from_env(monkeypatch):
    monkeypatch.delenv("ECOURT_REDIS_URL", raising=False)
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "5")
    monkeypatch.setenv("GATEWAY_RATE_WINDOW", "10")
    limiter = ratelimit.from_env()
    assert isinstance(limiter, MemoryRateLimiter)
    assert (limiter.limit, limiter.window) == (5, 10.0)
    monkeypatch.setenv("ECOURT_REDIS_URL", REDIS_URL)
    monkeypatch.delenv("GATEWAY_RATE_LIMIT")
    monkeypatch.delenv("GATEWAY_RATE_WINDOW")
    limiter = ratelimit.from_env()
    assert isinstance(limiter, SyncedRateLimiter)  # shared through Redis, synced every 0.1 s
    assert (limiter.limit, limiter.window, limiter.sync_every) == (600, 60.0, 0.1)
    assert limiter.prefix == "ecourt:rl:"
    monkeypatch.setenv("GATEWAY_RATE_KEY_PREFIX", "ecourt:rl:bench-1:")
    assert ratelimit.from_env().prefix == "ecourt:rl:bench-1:"
    monkeypatch.setenv("GATEWAY_RATE_SYNC_MS", "0")  # exact: Redis asked on every request
    limiter = ratelimit.from_env()
    assert isinstance(limiter, RedisRateLimiter)
    assert (limiter.limit, limiter.window) == (600, 60.0)
