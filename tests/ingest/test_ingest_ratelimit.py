"""Per-token rate limit: a bucket of events per token, refilled at the rate, with debt;
shared through PostgreSQL, and each process's share of it while PostgreSQL is away."""

import time

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.localstack import free_port
from services.ingest.ratelimit import TAKE, RateLimiter, SharedRateLimit


def test_a_token_may_spend_its_burst_then_waits_for_the_rate() -> None:
    limiter = RateLimiter(rate=100, burst=1000)
    assert limiter.retry_after("a", 0.0) == 0
    limiter.charge("a", 1000, 0.0)
    assert limiter.retry_after("a", 0.0) == 1
    assert limiter.retry_after("a", 0.005) == 1
    assert limiter.retry_after("a", 0.01) == 0  # one event's worth refilled


def test_a_batch_larger_than_what_is_left_goes_into_debt_and_the_wait_pays_it() -> None:
    limiter = RateLimiter(rate=100, burst=200)
    limiter.charge("a", 1000, 0.0)  # let in while the bucket held >= 1, charged in full
    assert limiter.retry_after("a", 0.0) == 9  # 801 events of debt at 100/s
    assert limiter.retry_after("a", 8.0) == 1
    assert limiter.retry_after("a", 8.02) == 0


def test_tokens_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    limiter.charge("a", 5, 0.0)
    assert limiter.retry_after("a", 0.0) > 0
    assert limiter.retry_after("b", 0.0) == 0


def test_the_bucket_never_saves_more_than_the_burst() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    limiter.retry_after("a", 0.0)
    limiter.charge("a", 21, 3600.0)  # an hour idle saved only 20
    assert limiter.retry_after("a", 3600.0) == 1


def test_rate_zero_means_no_limit() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    limiter.charge("a", 10**9, 0.0)
    assert limiter.retry_after("a", 0.0) == 0


@given(st.lists(st.tuples(st.floats(0, 10), st.integers(1, 1000)), max_size=50))
def test_events_let_through_never_exceed_burst_plus_rate_times_time(
    requests: list[tuple[float, int]],
) -> None:
    rate, burst = 50.0, 300
    limiter = RateLimiter(rate, burst)
    now, admitted_before_last = 0.0, 0
    for gap, size in requests:
        now += gap
        if limiter.retry_after("a", now) == 0:
            # every admitted request found at least one event in the bucket
            assert admitted_before_last <= burst + rate * now
            limiter.charge("a", size, now)
            admitted_before_last += size


async def test_the_shared_bucket_refuses_once_spent_and_the_process_then_knows_it(
    database: str,
) -> None:
    # as ingest's own role: its grants on the table are part of the promise
    role = database.replace("://tiendo@", "://tiendo_ingest@", 1)
    assert role != database
    pool = await asyncpg.create_pool(role, min_size=0, max_size=2)
    try:
        # one event per 1,000 s: nothing refills during the test
        limiter = SharedRateLimit(rate=0.001, burst=5, share=1)
        assert [await limiter.take(pool, "a", 2) for _ in range(4)] == [0, 0, 0, 2000]
        # 5 → 3 → 1 → −1: let in while one event was left, refused below it, not charged
        level = await pool.fetchval("SELECT level FROM ingest.rate_buckets WHERE token = 'a'")
        assert level == pytest.approx(-1, abs=0.01)
        assert 1900 <= limiter.known_wait("a", time.monotonic()) <= 2000
        assert limiter.known_wait("b", time.monotonic()) == 0
        assert await limiter.take(pool, "b", 5) == 0  # tokens do not share a bucket
    finally:
        await pool.close()


async def test_without_postgresql_a_process_decides_alone_on_its_share() -> None:
    # nothing listens there: every connection is refused at once
    pool = await asyncpg.create_pool(f"postgresql://x@127.0.0.1:{free_port()}/x", min_size=0)
    alone: list[None] = []
    try:
        limiter = SharedRateLimit(
            rate=0.001, burst=30, share=3, on_alone=lambda: alone.append(None)
        )
        waits = [await limiter.take(pool, "a", 1) for _ in range(11)]
    finally:
        await pool.close()
    assert waits[:10] == [0] * 10  # a third of the burst
    assert waits[10] > 0
    assert len(alone) == 1  # PostgreSQL is asked again only after a few seconds


# Requests as (microseconds since the one before, events): whole microseconds, which is what
# PostgreSQL's clock counts in.
_REQUESTS = st.lists(st.tuples(st.integers(0, 3 * 10**7), st.integers(1, 1000)), max_size=25)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=_REQUESTS,
    rate=st.sampled_from([0.5, 7.0, 100.0, 20_000.0]),
    burst=st.integers(1, 5000),
)
async def test_the_shared_statement_and_the_in_process_bucket_are_one_rule(
    database: str, requests: list[tuple[int, int]], rate: float, burst: int
) -> None:
    # The same bucket is written twice, as SQL (`TAKE`, what every process shares) and as
    # Python (`RateLimiter`, a process's fallback): fed the same requests at the same
    # moments, they must let in the same ones and hold the same level. PostgreSQL's `now()`
    # is the transaction's start, fixed inside one; the clock is moved by moving the row's
    # last update back by each gap.
    limiter = RateLimiter(rate, burst)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            now = 0.0
            for i, (gap_us, events) in enumerate(requests):
                now += gap_us / 1e6
                if i:
                    await conn.execute(
                        "UPDATE ingest.rate_buckets"
                        " SET updated_at = updated_at - make_interval(secs => $1::float8)"
                        " WHERE token = 'a'",
                        gap_us / 1e6,
                    )
                row = await conn.fetchrow(TAKE, "a", events, burst, rate)
                assert row is not None
                wait = limiter.retry_after("a", now)
                if row["admitted"] != (wait == 0):
                    # only on the edge, where the last bit of rounding decides; the two
                    # buckets part there, so the sequence ends
                    assert limiter._bucket("a", now).level == pytest.approx(1, abs=1e-6)
                    break
                if wait == 0:
                    limiter.charge("a", events, now)
                level = limiter._bucket("a", now).level
                assert row["level"] == pytest.approx(level, rel=1e-9, abs=1e-6)
            raise _RolledBack
    except _RolledBack:
        pass
    finally:
        await conn.close()


class _RolledBack(Exception):
    """Leaves the test's transaction without committing it."""
