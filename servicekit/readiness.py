"""Readiness checks beyond the database: is the broker reachable?

A probe may call ``/readyz`` every few seconds on every replica; the broker check opens a
connection at most every ``ttl`` seconds and answers from its last result in between.
"""

from __future__ import annotations

import threading
import time

from kombu import Connection


class BrokerCheck:
    def __init__(self, url: str, ttl: float = 5.0, timeout: float = 2.0) -> None:
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self._checked_at = 0.0
        self._error: Exception | None = None
        self._lock = threading.Lock()
        self.__name__ = "broker"

    def __call__(self) -> None:
        if self.url.startswith("memory"):
            return
        with self._lock:
            if time.monotonic() - self._checked_at > self.ttl:
                self._error = None
                try:
                    with Connection(self.url, connect_timeout=self.timeout) as conn:
                        conn.ensure_connection(max_retries=1, timeout=self.timeout)
                except Exception as exc:
                    self._error = exc
                self._checked_at = time.monotonic()
            if self._error is not None:
                raise self._error
