"""Per-client limits shared through Redis, decided in memory and synced in batches.

Why: ``RedisRateLimiter`` asks Redis on every request. On the asyncio front end that is a hop
to a thread, a redis-py call and a round trip per request, and it made the gateway four times
as expensive (``bench/``: ~740 µs of CPU per forwarded request against ~170 µs with the
in-memory limiter; 0.39 × direct). Here each gateway process decides at once from what it
knows — the global count Redis last reported for the client plus the hits it has taken since —
and a background thread adds its new hits to Redis every ``sync_every`` seconds in one
pipeline, reading back every client's global count and the time its window has left. The same
counting rule as the other limiters: a fixed window opened by the client's first hit, every
hit counted (refused ones too), ``limit`` allowed.

The trade (the one Kong's ``sync_rate`` makes): between two syncs a process does not see the
other processes' new hits, so all processes together may allow what they each accepted since
their last sync beyond the limit. To keep that small, a client's tenth of the limit in unsynced
hits wakes the sync at once instead of waiting for the interval: a burst spread over P
processes overshoots by about P × (limit / 10) plus what arrives during one Redis round trip
(measured with limit 5, two workers and nine sequential requests: all nine passed without the
early wake-up, six with it). A client talking to one process is limited exactly.
``GATEWAY_RATE_SYNC_MS=0`` keeps the exact limiter, which asks Redis on every request.

If Redis cannot be reached the processes keep counting on their own: each still enforces the
limit for what it sees (a warning at most every 30 s), which is stricter than failing open.
The hits a failed sync carried stay pending and go to Redis with the first sync that gets
through, so the shared counts lose nothing to an outage; the thread then tries once per
interval, not on every early wake-up.

Memory: one window is held per client, in the table the memory limiter holds too
(``gateway.ratelimit.WindowTable``). Once 10,000 are held the closed ones (nothing pending) are
swept, at most once per window (``gateway.ratelimit.SweepRule``), so a stream of new clients
does not walk the table on every hit. And at most ``max_windows`` (100,000) are held: a new
client at the cap makes room by dropping closed windows, oldest opened first (their unsynced
hits go with them, as they would at the client's next hit). If the oldest is still open — more
clients inside one window than the cap, a flood of addresses — the new client is refused until
that window closes and is not held; it is never let through uncounted, and the clients already
held keep their windows (a warning at most every 30 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from gateway.ratelimit import LUA_ADD_HITS, StoreWarning, WindowTable

log = logging.getLogger("gateway.ratelimit")


@dataclass(slots=True)
class _Window:
    """One client's window as this process knows it."""

    ends: float  # monotonic time the window closes (Redis's TTL once synced)
    known: int = 0  # the global count at the last sync, this process's synced hits included
    pending: int = 0  # hits taken here since, not yet added to Redis


class SyncedRateLimiter(WindowTable[_Window]):
    """The distributed limiter of ``gateway.edge``: no I/O in ``hit`` (see the module)."""

    #: ``hit`` never waits on I/O: the asyncio front end may call it on its event loop
    inline = True

    def __init__(self, redis_url: str, limit: int, window_seconds: float, *,
                 prefix: str = "ecourt:rl:", sync_every: float = 0.1,
                 socket_timeout: float = 0.5, max_windows: int = 100_000) -> None:
        import redis

        if limit < 1 or window_seconds <= 0 or sync_every <= 0 or max_windows < 1:
            raise ValueError("limit and max_windows must be >= 1, "
                             "window_seconds and sync_every > 0")
        super().__init__(float(window_seconds), time.monotonic(), max_windows)
        self.limit = limit
        self.prefix = prefix
        self.sync_every = sync_every
        self._client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._script = self._client.register_script(LUA_ADD_HITS)
        self._errors = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._warn = StoreWarning("rate limiter store unreachable, counting in this process only")
        self._syncer: threading.Thread | None = None
        self._syncer_pid = 0
        self._stopped = threading.Event()
        self._wake = threading.Event()  # sync now: a client's unsynced hits are many
        #: unsynced hits of one client that wake the sync thread before its interval is up
        self.early = max(1, limit // 10)

    def hit(self, client_key: str) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            window = self._window_for(client_key, now, _Window)
            if window is None:
                return False, self._until_room(now)
            window.pending += 1
            used = window.known + window.pending
            if window.pending >= self.early and window.known < self.limit:
                # (a client already over the limit is refused until its window closes: its
                # further hits wait for the interval, so a flood cannot keep the sync busy)
                self._wake.set()
        self._ensure_syncer()
        if used <= self.limit:
            return True, 0.0
        return False, max(window.ends - now, 0.0)

    def sync(self) -> bool:
        """Add the hits taken since the last sync to Redis and learn the global counts;
        False when Redis could not be reached (the hits stay pending)."""
        with self._lock:
            batch = [(key, w, w.pending) for key, w in self._windows.items() if w.pending]
            for _, window, n in batch:
                window.known += n  # counted as if Redis had answered, until it does
                window.pending = 0
        if not batch:
            return True
        window_ms = max(int(self.window * 1000), 1)
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, _, n in batch:
                self._script(keys=[self.prefix + key], args=[n, window_ms], client=pipe)
            answers = pipe.execute()
        except self._errors as exc:
            self._warn(exc)
            with self._lock:
                for key, window, n in batch:
                    if self._windows.get(key) is window:  # (a closed window's hits expire)
                        window.known -= n
                        window.pending += n
            return False
        now = time.monotonic()
        with self._lock:
            for (key, window, _), (count, ttl_ms) in zip(batch, answers, strict=True):
                if self._windows.get(key) is not window:
                    continue
                window.known = int(count)
                window.ends = now + max(int(ttl_ms), 0) / 1000.0
        return True

    def close(self) -> None:
        """Stop the background sync (tests; a worker simply exits)."""
        self._stopped.set()
        self._wake.set()
        if self._syncer is not None:
            self._syncer.join(2)

    def _ensure_syncer(self) -> None:
        # started on first use in the process that serves (gunicorn forks after building
        # the app in each worker, but a thread never survives a fork anyway)
        if self._syncer is not None and self._syncer_pid == os.getpid():
            return
        with self._lock:
            if self._syncer is not None and self._syncer_pid == os.getpid():
                return
            self._syncer_pid = os.getpid()
            self._syncer = threading.Thread(target=self._run, name="rate-limit-sync",
                                            daemon=True)
            self._syncer.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.sync_every)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                synced = self.sync()
            except Exception:  # never let the thread die: limits would stop being shared
                log.exception("rate limit sync failed")
                synced = False
            if not synced:  # Redis is away: try again after an interval, not on each wake
                self._stopped.wait(self.sync_every)
                self._wake.clear()

    def _closed(self, window: _Window, now: float) -> bool:
        """A sweep keeps a closed window whose hits have not reached Redis yet."""
        return now >= window.ends and not window.pending
