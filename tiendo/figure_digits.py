"""Figures written to the digits shown, on the side of the line they are read against.

A status is read against a figure: `done` against pct 100, `behind` against a pace
threshold such as 0.9. Rounded to the digits shown, a unit at 13,432 of 13,433 (99.993 %)
reads 100.0 beside a status that is not `done`, and a pace of 0.8996 reads 0.900 beside
`behind`. Cut down instead, a figure never reads more than it is, so it stays on its side
of every line of up to as many digits. One rule for everything that writes these figures
for people (the aggregator's leaderboard exports, the notifier's briefing pack)."""

import math
from decimal import ROUND_FLOOR, Decimal


def cut(value: float, digits: int) -> float:
    """`value` cut down to `digits` decimals: never more than it is (from its shortest
    decimal form, so that 0.291 stays 0.291 where `floor(0.291 * 1000)` gives 0.290)."""
    if not math.isfinite(value):
        return value
    step = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(value)).quantize(step, rounding=ROUND_FLOOR))
