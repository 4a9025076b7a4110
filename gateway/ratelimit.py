"""Per-client rate limits: in memory (embedded mode) or in Redis (shared by every replica).

Both limiters use the same fixed window per client: the window opens at the client's first hit
and lasts ``window_seconds``; up to ``limit`` hits pass inside it, the rest are refused with the
time until the window closes. A fixed window lets a client burst up to twice the limit across a
window boundary; at the default 600/minute that is acceptable, and it costs one round trip and
one key per client.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from servicekit.config import env_float, env_int

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def hit(self, client_key: str) -> tuple[bool, float]:
        """Count one request; return (allowed, seconds until the client may retry)."""
        ...


class SweepRule:
    """When an in-memory limiter walks its table of windows to drop the closed ones: only once
    the table holds ``above`` windows, and then at most once per ``window`` seconds. A walk
    costs the whole table; walking more often than a window lasts finds few windows that have
    closed since the last walk, and doing it on every new client would make each new client
    cost a walk once the table is large. (Called under the limiter's lock.)"""

    def __init__(self, window: float, now: float, above: int = 10_000) -> None:
        self.window = window
        self.above = above
        self._last = now

    def due(self, size: int, now: float) -> bool:
        """True (and the walk counted as done now) when a table of ``size`` is to be swept."""
        if size < self.above or now - self._last < self.window:
            return False
        self._last = now
        return True


class _Timed(Protocol):
    ends: float  # monotonic time the window closes


W = TypeVar("W", bound=_Timed)


class WindowTable(Generic[W]):
    """The table an in-memory limiter holds: one window per client, ordered by when it opened
    (oldest first), walked for closed windows by ``SweepRule`` and never above ``max_windows``.

    Why a cap: between two sweeps (a window apart) nothing else stops a flood of distinct
    client addresses from growing the table without bound. At the cap a new client makes room
    by dropping closed windows, oldest opened first. If the oldest is still open — more clients
    inside one window than the cap — the new client is refused until that window closes and is
    not held: letting it through uncounted would lift the limit for anyone who varies the
    address, and dropping an open window would reset a limited client's count. The clients
    already held keep their windows (a warning at most every 30 s). Subclasses call
    ``_window_for`` under their lock, with their own module's clock.
    """

    _SWEEP_ABOVE = 10_000

    def __init__(self, window: float, now: float, max_windows: int) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self.window = window
        self.max_windows = max_windows
        self._windows: OrderedDict[str, W] = OrderedDict()
        self._sweeps = SweepRule(window, now, self._SWEEP_ABOVE)
        self._full_warned = -math.inf

    def _window_for(self, key: str, now: float, new: Callable[[float], W]) -> W | None:
        """``key``'s open window: the one held, else one opened at ``now`` as ``new(ends)``;
        None when a new client finds the table full of open windows (refused for
        ``_until_room``)."""
        held = self._windows.get(key)
        if held is not None and now < held.ends:
            return held
        if self._sweeps.due(len(self._windows), now):
            self._sweep(now)
        if held is None and not self._make_room(now):
            self._warn_full(now)
            return None
        window = self._windows[key] = new(now + self.window)
        self._windows.move_to_end(key)
        return window

    def _until_room(self, now: float) -> float:
        """How long a refused new client waits: until the oldest window closes."""
        return max(next(iter(self._windows.values())).ends - now, 0.0)

    def _closed(self, window: W, now: float) -> bool:
        """Whether a sweep may drop ``window``."""
        return now >= window.ends

    def _sweep(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if self._closed(w, now)]:
            del self._windows[key]

    def _warn_full(self, now: float) -> None:
        if now - self._full_warned >= 30.0:
            self._full_warned = now
            log.warning("rate limiter holds %d open windows, refusing new clients",
                        self.max_windows)

    def _make_room(self, now: float) -> bool:
        """Room for one more window: closed windows go, oldest opened first; False when the
        table is at ``max_windows`` and its oldest window is still open."""
        windows = self._windows
        while len(windows) >= self.max_windows:
            if now < next(iter(windows.values())).ends:
                return False
            windows.popitem(last=False)
        return True


@dataclass(slots=True)
class _Count:
    """One client's window in this process."""

    ends: float
    hits: int = 0


class MemoryRateLimiter(WindowTable[_Count]):
    """One process's limiter. Thread-safe; memory stays bounded: closed windows are swept and
    at most ``max_windows`` are held (``WindowTable``: a new client facing a table full of
    open windows is refused, never let through uncounted)."""

    #: ``hit`` never waits on I/O (``gateway.edge`` calls such limiters on its event loop)
    inline = True

    def __init__(self, limit: int, window_seconds: float, *,
                 max_windows: int = 100_000) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.limit = limit
        self._lock = threading.Lock()
        super().__init__(float(window_seconds), time.monotonic(), max_windows)

    def hit(self, client_key: str) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            window = self._window_for(client_key, now, _Count)
            if window is None:
                return False, self._until_room(now)
            window.hits += 1
            if window.hits <= self.limit:
                return True, 0.0
            return False, max(window.ends - now, 0.0)


# Add ARGV[1] hits to a client's window (opening it for ARGV[2] ms if new) and say where it
# stands, in one atomic script: no key can be left without an expiry.
LUA_ADD_HITS = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""


class StoreWarning:
    """A warning about the limiter's store, logged at most once every ``every`` seconds."""

    def __init__(self, text: str, every: float = 30.0) -> None:
        self.text = text
        self.every = every
        self._last = -math.inf

    def __call__(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.warning("%s: %s", self.text, exc.__class__.__name__)


class RedisRateLimiter:
    """The distributed limiter: one Redis key per client, shared by every gateway replica.

    **Fails open**: if Redis is unreachable or errors, the request is allowed and a warning is
    logged (at most once every 30 seconds), because refusing every portal request while the
    limiter's store is down would turn a Redis outage into a full outage. Socket timeouts are
    short (``socket_timeout``) so a dead Redis does not stall requests either.
    """

    def __init__(self, redis_url: str, limit: int, window_seconds: float,
                 prefix: str = "ecourt:rl:", socket_timeout: float = 0.5) -> None:
        import redis

        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.limit = limit
        self.window = float(window_seconds)
        self.prefix = prefix
        self._client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._script = self._client.register_script(LUA_ADD_HITS)
        self._warn = StoreWarning("rate limiter store unreachable, allowing requests (fail open)")
        self._errors = (redis.RedisError, OSError)

    def hit(self, client_key: str) -> tuple[bool, float]:
        window_ms = max(int(self.window * 1000), 1)
        try:
            count, ttl_ms = self._script(keys=[self.prefix + client_key], args=[1, window_ms])
        except self._errors as exc:
            self._warn(exc)
            return True, 0.0
        if int(count) <= self.limit:
            return True, 0.0
        return False, max(int(ttl_ms), 0) / 1000.0


def limits_from_env() -> tuple[int, float]:
    """``GATEWAY_RATE_LIMIT`` requests (default 600) per ``GATEWAY_RATE_WINDOW`` seconds
    (default 60): both tiers read them here."""
    return (env_int("GATEWAY_RATE_LIMIT", 600, minimum=1),
            env_float("GATEWAY_RATE_WINDOW", 60.0, minimum=0.001))


def from_env() -> RateLimiter:
    """``ECOURT_REDIS_URL`` set -> limits shared through Redis, else memory; the limits of
    ``limits_from_env``. With Redis, ``GATEWAY_RATE_SYNC_MS`` (default 100) is how often each
    process syncs its counts (``gateway.synced_limiter``), 0 asks Redis on every request, and
    ``GATEWAY_RATE_KEY_PREFIX`` (default ``ecourt:rl:``) starts every key."""
    limit, window = limits_from_env()
    url = os.environ.get("ECOURT_REDIS_URL", "").strip()
    if not url:
        return MemoryRateLimiter(limit, window)
    prefix = os.environ.get("GATEWAY_RATE_KEY_PREFIX", "").strip() or "ecourt:rl:"
    sync_ms = env_float("GATEWAY_RATE_SYNC_MS", 100.0, minimum=0)
    if sync_ms <= 0:
        return RedisRateLimiter(url, limit, window, prefix=prefix)
    from gateway.synced_limiter import SyncedRateLimiter

    return SyncedRateLimiter(url, limit, window, prefix=prefix, sync_every=sync_ms / 1000.0)
