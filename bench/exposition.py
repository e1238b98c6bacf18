"""Figures read from a service's /metrics: plain values and histogram quantiles."""

import re

import httpx


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).text


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def histogram_buckets(text: str, name: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of a Prometheus histogram in an exposition."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket{{le="([^"]+)"}} ([\d.e+]+)', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    return buckets


def histogram_quantile(
    buckets: list[tuple[float, float]], q: float, since: list[tuple[float, float]] | None = None
) -> float | None:
    """q-quantile, interpolated within buckets as PromQL does, of what was observed after
    `since` (an earlier reading of the same histogram)."""
    if since:
        buckets = [(le, c - c0) for (le, c), (_, c0) in zip(buckets, since, strict=True)]
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            share = (rank - prev_count) / (count - prev_count) if count > prev_count else 1
            return prev_le + (le - prev_le) * share
        prev_le, prev_count = le, count
    return None
