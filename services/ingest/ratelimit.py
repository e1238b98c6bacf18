"""Per-token rate limit: a token bucket counted in events, pure (time is an argument).

A request is let in while the token's bucket holds at least one event, and is charged for
every event it carried afterwards, so the bucket may go into debt: a 1,000-event batch is
never refused for being larger than what is left, and the debt makes the next requests
wait (429 with `Retry-After`) until the rate has paid it back. One bucket per token name,
so memory is bounded by the number of tokens; each ingest replica enforces its own.
"""

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        """`rate` events per second (0: unlimited), at most `burst` saved up."""
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elif now > bucket.updated:
            bucket.level = min(self.burst, bucket.level + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def retry_after(self, key: str, now: float) -> int:
        """0 when `key` may send now, else whole seconds until it may (at least 1)."""
        if self.rate <= 0:
            return 0
        bucket = self._bucket(key, now)
        if bucket.level >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.level) / self.rate))

    def charge(self, key: str, events: int, now: float) -> None:
        """Take `events` from `key`'s bucket (it may go below zero)."""
        if self.rate <= 0:
            return
        self._bucket(key, now).level -= events
