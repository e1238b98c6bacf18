"""Counters recomputed from the stored events: the rebuild's bookkeeping here, the rules
themselves (`recount`, `RECOUNT_SUBJECTS`) in `tiendo.counting`."""

from tiendo.counting import recount
from tiendo.counting.batch import COUNTERS_LOCK_KEY
from tiendo.counting.rules import RECOUNT_SUBJECTS

__all__ = ["DELETE_EVENTS_FROM", "LOCK_REBUILD", "RECOUNT_SUBJECTS", "UNLOCK_REBUILD", "recount"]

# The session-wide form of the apply lock: a running aggregator waits out the rebuild.
LOCK_REBUILD = f"SELECT pg_advisory_lock({COUNTERS_LOCK_KEY})"

UNLOCK_REBUILD = f"SELECT pg_advisory_unlock({COUNTERS_LOCK_KEY})"

DELETE_EVENTS_FROM = """
DELETE FROM events e
USING unnest($1::int[], $2::bigint[]) AS f (partition, first_offset)
WHERE e.kafka_partition = f.partition AND e.kafka_offset >= f.first_offset
"""
