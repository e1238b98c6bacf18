"""Per-token rate limit: a bucket of events per token, refilled at the rate, with debt."""

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.ratelimit import RateLimiter


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
