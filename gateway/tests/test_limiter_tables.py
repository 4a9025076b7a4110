"""The table of windows ``gateway.synced_limiter`` holds in memory: how often it is walked and
how large it grows. No Redis is asked (nothing is synced) and no time is measured: the
limiter's clock is a stand-in the tests move."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import synced_limiter
from gateway.synced_limiter import SyncedRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingWindows(OrderedDict):  # type: ignore[type-arg]
    """The limiter's table, counting the walks over it and the windows they examine."""

    walks = 0
    examined = 0
    budget = 100_000  # examined windows; far beyond it the old every-new-key sweep stops here

    def items(self) -> Any:
        self.walks += 1
        return self._walk()

    def _walk(self) -> Iterator[Any]:
        for item in super().items():
            self.examined += 1
            if self.examined > self.budget:
                raise AssertionError(f"{self.walks} walks over the windows, "
                                     f"{self.examined} windows examined")
            yield item


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(synced_limiter, "time", SimpleNamespace(monotonic=fake))
    return fake


@pytest.fixture
def make(clock: Clock) -> Iterator[Callable[..., SyncedRateLimiter]]:
    made: list[SyncedRateLimiter] = []

    def build(**kwargs: Any) -> SyncedRateLimiter:
        # never synced: the thread's interval is an hour and no client wakes it early
        limiter = SyncedRateLimiter("redis://127.0.0.1:1/0", kwargs.pop("limit", 5),
                                    kwargs.pop("window", 60.0), sync_every=3600.0, **kwargs)
        limiter.early = 10**9
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        limiter.close()


def test_new_clients_sweep_the_table_at_most_once_per_window(make, clock) -> None:
    limiter = make(window=60.0)
    windows = limiter._windows = CountingWindows()
    # 20,000 new clients over two minutes (6 ms apart), 10,000 held after the first minute:
    # the old limiter walked the whole table on every one of the second 10,000
    for i in range(20_000):
        clock.now += 0.006
        assert limiter.hit(f"client-{i}") == (True, 0.0)
    assert 1 <= windows.walks <= 2, windows.walks  # swept, once a window has passed
    assert windows.examined <= 2 * 20_000


def test_at_the_cap_closed_windows_go_oldest_first_and_no_new_client_goes_uncounted(
        make, clock, caplog) -> None:
    limiter = make(limit=2, window=60.0, max_windows=100)
    start = clock.now
    for i in range(100):  # a-0 opens at start, a-99 at start + 9.9 s
        clock.now = start + i * 0.1
        assert limiter.hit(f"a-{i}")[0]
    # full of open windows: a new client is refused (not let through, not held) until the
    # oldest window closes; the clients already held are limited as before
    clock.now = start + 30.0
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        allowed, retry = limiter.hit("newcomer")
    assert not allowed and retry == pytest.approx(30.0)
    assert "refusing new clients" in caplog.text
    assert "newcomer" not in limiter._windows and len(limiter._windows) == 100
    assert limiter.hit("a-5") == (True, 0.0)
    assert not limiter.hit("a-5")[0]
    # a-0 .. a-19 have closed by start + 62 s; a-10 comes back (its window reopens, last)
    clock.now = start + 62.0
    assert limiter.hit("a-10") == (True, 0.0)
    for i in range(5):
        assert limiter.hit(f"b-{i}") == (True, 0.0)
    held = list(limiter._windows)
    assert len(held) == 100
    assert not any(f"a-{i}" in held for i in (0, 1, 2, 3, 4))  # the oldest closed went first
    assert {"a-5", "a-10", "a-99", "b-4"} <= set(held)
    # a client let in at the cap is limited like any other
    assert [limiter.hit("b-0")[0] for _ in range(2)] == [True, False]


def test_a_full_table_does_not_walk_on_every_new_client(make, clock) -> None:
    limiter = make(window=60.0, max_windows=10_000)
    windows = limiter._windows = CountingWindows()
    for i in range(10_000):
        assert limiter.hit(f"a-{i}")[0]
    clock.now += 1.0
    for i in range(5_000):  # all refused: the table is full of open windows
        assert not limiter.hit(f"b-{i}")[0]
    assert windows.walks == 0 and len(windows) == 10_000
