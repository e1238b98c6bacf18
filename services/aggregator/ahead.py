"""Events ahead of the clock: held until their moment.

Ingest accepts an event up to 5 minutes ahead of its clock (an upstream clock a little
fast). Counted when consumed, such an event was live before `as_of` now could count it, and
the notifier judged, and the boards showed, a figure the history did not hold yet. So the
consumer holds an event whose `occurred_at` is after the aggregator's clock in
`events_ahead`, in the batch's transaction (with its offsets: exactly once, as any event),
and `Applier.release_held` applies it once the clock has reached it, through the same
statements as a consumed batch (docs/semantics.md "Events ahead of the clock")."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.aggregator.repository.ahead import Held
from tiendo.counting.batch import STAGING_COLUMNS

OCCURRED_AT = STAGING_COLUMNS.index("occurred_at")
PARTITION = STAGING_COLUMNS.index("kafka_partition")
OFFSET = STAGING_COLUMNS.index("kafka_offset")
RECEIVED_AT = STAGING_COLUMNS.index("received_at")


def split(
    rows: Sequence[tuple[Any, ...]], payloads: dict[tuple[int, int], bytes], now: datetime
) -> tuple[list[tuple[Any, ...]], list[Held]]:
    """The staging rows whose moment has come (`occurred_at` ≤ `now`), in their order, and
    the others with their records' bytes, to hold."""
    due: list[tuple[Any, ...]] = []
    ahead: list[Held] = []
    for row in rows:
        if row[OCCURRED_AT] > now:
            ahead.append(Held(row, payloads[row[PARTITION], row[OFFSET]]))
        else:
            due.append(row)
    return due, ahead
