"""The Redis-shared limiter that decides in memory (``gateway.synced_limiter``), against the
real Redis on 127.0.0.1: each "process" is its own limiter instance with its own counts."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from gateway.synced_limiter import SyncedRateLimiter
from servicekit.testing import TcpProxy, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.real


@pytest.fixture
def make() -> Iterator[Callable[..., SyncedRateLimiter]]:
    """Limiters sharing one fresh key prefix; their keys are removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"ecourt:rl:test:{uuid.uuid4().hex}:"
    made: list[SyncedRateLimiter] = []

    def build(limit: int = 10, window: float = 30.0, sync_every: float = 60.0,
              url: str = REDIS_URL, manual: bool = True) -> SyncedRateLimiter:
        limiter = SyncedRateLimiter(url, limit, window, prefix=prefix, sync_every=sync_every,
                                    socket_timeout=0.2)
        if manual:  # the test calls sync() itself: the background thread must never race it
            limiter.early = 10**9  # (and sync_every is long)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        limiter.close()
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def test_one_process_limits_at_once_without_waiting_for_redis(make):
    limiter = make(limit=3)
    assert [limiter.hit("k")[0] for _ in range(3)] == [True, True, True]
    allowed, retry = limiter.hit("k")
    assert not allowed and 29 < retry <= 30
    assert limiter.hit("other")[0]  # per client


def test_processes_share_their_counts_through_redis(make):
    a, b = make(limit=10), make(limit=10)
    for _ in range(6):
        assert a.hit("k")[0]
    a.sync()
    assert b.hit("k")[0]  # b's 1st: 7 in all once b learns of a's 6
    b.sync()
    assert [b.hit("k")[0] for _ in range(4)] == [True, True, True, False]  # 8, 9, 10, 11
    b.sync()
    # a learns of b's hits at its own next sync: until then it decides on its own count (the
    # overshoot of one interval the module describes), then it refuses
    assert a.hit("k")[0]
    a.sync()
    assert not a.hit("k")[0]
    a.sync()
    assert int(redis.Redis.from_url(REDIS_URL).get(a.prefix + "k") or 0) == 13  # every hit


def test_the_window_is_redis_s_and_closes(make):
    a, b = make(limit=1, window=0.5), make(limit=1, window=0.5)
    assert a.hit("k")[0]
    a.sync()
    time.sleep(0.2)
    b.sync()  # nothing pending: learns nothing, but its own first hit...
    assert b.hit("k")[0]  # ...is allowed locally until it syncs
    b.sync()
    allowed, retry = b.hit("k")
    assert not allowed and 0 < retry <= 0.35  # Redis's TTL, not a fresh 0.5 s
    time.sleep(0.5)
    assert a.hit("k")[0] and b.hit("k")[0]


def test_the_background_thread_syncs(make):
    a, b = (make(limit=5, sync_every=0.05, manual=False),
            make(limit=5, sync_every=0.05, manual=False))
    for _ in range(5):
        assert a.hit("k")[0]
    assert b.hit("other")[0]  # starts b's thread
    wait_for(lambda: int(redis.Redis.from_url(REDIS_URL).get(a.prefix + "k") or 0) == 5,
             timeout=5)
    assert b.hit("k")[0]  # b has not synced "k" yet: its first hit is allowed locally
    wait_for(lambda: not b.hit("k")[0], timeout=5)


def test_a_tenth_of_the_limit_unsynced_wakes_the_sync_before_its_interval(make):
    a = make(limit=20, sync_every=60.0, manual=False)  # the interval alone would not sync here
    assert a.early == 2
    assert a.hit("k")[0]
    time.sleep(0.2)
    key = a.prefix + "k"
    assert redis.Redis.from_url(REDIS_URL).get(key) is None  # one hit: waits for the interval
    assert a.hit("k")[0]  # two unsynced hits: sync now
    wait_for(lambda: int(redis.Redis.from_url(REDIS_URL).get(key) or 0) == 2, timeout=5)


def test_a_client_over_the_limit_does_not_keep_the_sync_busy(make):
    a = make(limit=2, sync_every=60.0, manual=False)
    assert [a.hit("k")[0] for _ in range(3)] == [True, True, False]
    key = a.prefix + "k"
    wait_for(lambda: int(redis.Redis.from_url(REDIS_URL).get(key) or 0) == 3, timeout=5)
    wait_for(lambda: not a._wake.is_set(), timeout=5)
    assert not a.hit("k")[0]  # known to be over the limit: refused, and no early sync asked
    assert not a._wake.is_set()


def test_redis_unreachable_each_process_still_limits(make, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.ratelimit")
    limiter = make(limit=2, url="redis://127.0.0.1:1/0")  # nothing listens there
    assert limiter.hit("k")[0] and limiter.hit("k")[0]
    limiter.sync()
    limiter.sync()
    assert not limiter.hit("k")[0]  # not failing open: the local count stands
    warnings = [r for r in caplog.records if "counting in this process only" in r.getMessage()]
    assert len(warnings) == 1


def test_hits_taken_while_redis_is_away_reach_it_when_it_is_back(make):
    proxy = TcpProxy("127.0.0.1", 6379)
    try:
        limiter = make(limit=10, url=f"redis://127.0.0.1:{proxy.port}/0")
        assert limiter.hit("k")[0]
        assert limiter.sync()
        proxy.cut()
        assert limiter.hit("k")[0] and limiter.hit("k")[0]
        assert not limiter.sync()
        assert limiter.hit("k")[0]  # 4 in all, none lost locally either
        proxy.heal()
        wait_for(limiter.sync, timeout=10, message="a sync through the healed line")
        assert int(redis.Redis.from_url(REDIS_URL).get(limiter.prefix + "k") or 0) == 4
    finally:
        proxy.close()


def test_a_sync_thread_facing_a_dead_redis_waits_an_interval_between_tries(make):
    limiter = make(limit=10, url="redis://127.0.0.1:1/0", sync_every=0.2, manual=False)
    tries: list[float] = []
    real_sync = limiter.sync

    def counted() -> bool:
        tries.append(time.monotonic())
        return real_sync()

    limiter.sync = counted  # type: ignore[method-assign]
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # every hit asks for an early sync (early is 1)
        limiter.hit("k")
        time.sleep(0.005)
    assert 2 <= len(tries) <= 8, tries  # ~1 s of tries, ≥ 0.2 s apart, not ~200


def test_the_edge_decides_on_its_loop_with_it(make):
    from concurrent.futures import ThreadPoolExecutor

    from gateway.app import create_gateway
    from gateway.edge import EdgeServer
    from gateway.ratelimit import RedisRateLimiter

    class _Verifier:
        def verify(self, *args: object, **kwargs: object) -> dict[str, object]:
            raise AssertionError("no tokens here")

    def edge(limiter: object) -> EdgeServer:
        gw = create_gateway(upstreams={"svc": "http://127.0.0.1:9"}, verifier=_Verifier(),
                            rate_limiter=limiter)  # type: ignore[arg-type]
        return EdgeServer(gw, ThreadPoolExecutor(1))

    assert edge(make()).inline_limits
    assert not edge(RedisRateLimiter(REDIS_URL, 10, 30)).inline_limits
