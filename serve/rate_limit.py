"""Per-key token buckets: a steady rate per minute with a burst allowance."""

from __future__ import annotations

import math
import threading
import time

from specialist.errors import RateLimited


class RateLimiter:
    """Admits `per_minute` requests per key on average, up to `burst` at once."""

    def __init__(self, *, per_minute: int, burst: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for `key`, or raise RateLimited saying when to retry."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self._rate)
                err = RateLimited(f"rate limit exceeded for this key; retry in {wait} s")
                err.retry_after_s = wait  # type: ignore[attr-defined]
                raise err
            self._buckets[key] = (tokens - 1.0, now)
