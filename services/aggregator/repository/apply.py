"""Applying a batch: staging, the idempotency check, subjects, counting into the own
columns and the rollup, in one transaction the caller owns."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tiendo.database import Connection
from tiendo.event import Event

# Applying and re-planning both touch `value`; re-planning recomputes it from the own
# columns, so it must not interleave with an apply (a lost update otherwise).
LOCK_APPLY = "SELECT pg_advisory_xact_lock_shared(7301118)"

LOCK_REPLAN = "SELECT pg_advisory_xact_lock(7301118)"


# -- applying a batch ---------------------------------------------------------------------
# Temp tables live per connection; the consumer keeps one connection for its life.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS batch_in (
    event_id text, unit text, indicator text, kind text, value bigint,
    occurred_at timestamptz, subject text, received_at timestamptz, source text,
    kafka_partition integer, kafka_offset bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_new (LIKE events) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_applied (
    campaign_id text, unit text, indicator text, kind text, value bigint,
    occurred_at timestamptz, event_id text, day date, adjustment boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_subjects (
    indicator text, subject text, event_id text, occurred_at timestamptz, unit text,
    first boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_dethroned (event_id text PRIMARY KEY)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_keys (
    campaign_id text, unit text, indicator text, old_own bigint, snap_at timestamptz,
    resnapped boolean, last_at timestamptz, PRIMARY KEY (campaign_id, unit, indicator)
) ON COMMIT DELETE ROWS;
"""


STAGING_COLUMNS = (
    "event_id",
    "unit",
    "indicator",
    "kind",
    "value",
    "occurred_at",
    "subject",
    "received_at",
    "source",
    "kafka_partition",
    "kafka_offset",
)


# Take out of the batch what cannot be applied (unknown unit or indicator) in one pass;
# those not already applied earlier go to the dead letters.
TAKE_UNAPPLIABLE = """
WITH taken AS (
    DELETE FROM batch_in b
    WHERE NOT EXISTS (SELECT 1 FROM units u WHERE u.code = b.unit)
       OR NOT EXISTS (SELECT 1 FROM indicators i WHERE i.code = b.indicator)
    RETURNING b.kafka_partition, b.kafka_offset, b.event_id, b.unit, b.indicator
)
SELECT t.kafka_partition, t.kafka_offset, t.event_id,
       CASE WHEN NOT EXISTS (SELECT 1 FROM units u WHERE u.code = t.unit)
            THEN 'unknown unit ' || t.unit
            ELSE 'unknown indicator ' || t.indicator END AS reason
FROM taken t
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id)
"""


# The idempotency check: an event_id is applied once, forever. Within one batch the first
# delivery wins.
INSERT_NEW_EVENTS = """
WITH inserted AS (
    INSERT INTO events (event_id, unit, indicator, kind, value, occurred_at, subject,
                        received_at, source, kafka_partition, kafka_offset)
    SELECT DISTINCT ON (event_id) event_id, unit, indicator, kind, value, occurred_at, subject,
           received_at, source, kafka_partition, kafka_offset
    FROM batch_in
    ORDER BY event_id, kafka_partition, kafka_offset
    ON CONFLICT (event_id) DO NOTHING
    RETURNING *
)
INSERT INTO batch_new SELECT * FROM inserted
"""


# The common case, every event_id of the batch distinct: no sort needed.
INSERT_NEW_EVENTS_DISTINCT = """
WITH inserted AS (
    INSERT INTO events (event_id, unit, indicator, kind, value, occurred_at, subject,
                        received_at, source, kafka_partition, kafka_offset)
    SELECT event_id, unit, indicator, kind, value, occurred_at, subject,
           received_at, source, kafka_partition, kafka_offset
    FROM batch_in
    ON CONFLICT (event_id) DO NOTHING
    RETURNING *
)
INSERT INTO batch_new SELECT * FROM inserted
"""


# -- subjects: only the earliest event of each (indicator, subject) counts ---------------
STAGE_SUBJECTS = """
INSERT INTO batch_subjects
SELECT indicator, subject, event_id, occurred_at, unit,
       row_number() OVER (PARTITION BY indicator, subject ORDER BY occurred_at, event_id) = 1
FROM batch_new
WHERE subject IS NOT NULL AND kind = 'increment'
"""


# Replicas applying different partitions may see the same citizen: serialise per subject
# (in a fixed order, so two transactions cannot deadlock on these locks).
LOCK_SUBJECTS = """
SELECT pg_advisory_xact_lock(hashtextextended(indicator || '/' || subject, 7301119))
FROM (SELECT DISTINCT indicator, subject FROM batch_subjects ORDER BY 1, 2) s
"""


# Winners so far that an earlier event of this batch beats: their count moves.
FIND_DETHRONED = """
INSERT INTO batch_dethroned
SELECT s.event_id
FROM subjects s
JOIN batch_subjects b ON b.first AND b.indicator = s.indicator AND b.subject = s.subject
WHERE (b.occurred_at, b.event_id) < (s.occurred_at, s.event_id)
"""


MARK_SUBJECT_DUPLICATES = """
WITH losers AS (
    SELECT b.event_id
    FROM batch_subjects b
    LEFT JOIN subjects s ON s.indicator = b.indicator AND s.subject = b.subject
    WHERE NOT b.first OR (s.event_id IS NOT NULL
                          AND (s.occurred_at, s.event_id) < (b.occurred_at, b.event_id))
), marked AS (
    UPDATE events e SET counted = false
    FROM (SELECT event_id FROM losers UNION ALL SELECT event_id FROM batch_dethroned) l
    WHERE e.event_id = l.event_id
    RETURNING e.event_id
)
UPDATE batch_new n SET counted = false FROM losers l WHERE n.event_id = l.event_id
"""


UPSERT_SUBJECT_WINNERS = """
INSERT INTO subjects AS s (indicator, subject, event_id, occurred_at, unit)
SELECT indicator, subject, event_id, occurred_at, unit FROM batch_subjects WHERE first
ORDER BY 1, 2
ON CONFLICT (indicator, subject) DO UPDATE
SET event_id = EXCLUDED.event_id, occurred_at = EXCLUDED.occurred_at, unit = EXCLUDED.unit
WHERE (EXCLUDED.occurred_at, EXCLUDED.event_id) < (s.occurred_at, s.event_id)
"""


# Which campaigns each new event counts for: the indicator is the campaign's and the
# event happened inside its window. Later events are stored but do not count (SPEC §5).
# Campaigns flagged unusable ($1, see `guard.py`) are left out: a bad one must not stop
# counting for the others.
# A dethroned subject winner is withdrawn as an adjustment of minus its value.
SELECT_APPLIED = """
INSERT INTO batch_applied
SELECT c.id, n.unit, n.indicator, n.kind, n.value, n.occurred_at, n.event_id,
       (n.occurred_at AT TIME ZONE c.timezone)::date, false
FROM batch_new n
JOIN campaigns c ON n.indicator = ANY (c.indicators)
                AND n.occurred_at >= c.starts_at AND n.occurred_at <= c.deadline
WHERE n.counted AND c.id <> ALL ($1::text[])
UNION ALL
SELECT c.id, e.unit, e.indicator, e.kind, -e.value, e.occurred_at, e.event_id,
       (e.occurred_at AT TIME ZONE c.timezone)::date, true
FROM batch_dethroned d
JOIN events e ON e.event_id = d.event_id
JOIN campaigns c ON e.indicator = ANY (c.indicators)
                AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline
WHERE c.id <> ALL ($1::text[])
"""


UPSERT_DAILY = """
INSERT INTO daily_counts AS d (campaign_id, unit, indicator, day, increments, events)
SELECT campaign_id, unit, indicator, day,
       coalesce(sum(value) FILTER (WHERE kind = 'increment'), 0),
       -- a withdrawn subject winner no longer counts on its day
       count(*) FILTER (WHERE NOT adjustment) - count(*) FILTER (WHERE adjustment)
FROM batch_applied
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (campaign_id, unit, indicator, day) DO UPDATE
SET increments = d.increments + coalesce(EXCLUDED.increments, 0),
    events = d.events + EXCLUDED.events
"""


# Every (campaign, unit, indicator) the batch touches, once; the later statements work on
# these few keys rather than on every applied event.
GROUP_KEYS = """
INSERT INTO batch_keys (campaign_id, unit, indicator, resnapped, last_at)
SELECT campaign_id, unit, indicator, false, max(occurred_at) FILTER (WHERE NOT adjustment)
FROM batch_applied
GROUP BY 1, 2, 3
"""


# Rows normally exist since the campaign was planned; a unit added later gets one here.
ENSURE_PROGRESS_ROWS = """
INSERT INTO progress (campaign_id, unit, indicator, own_baseline)
SELECT k.campaign_id, k.unit, k.indicator, coalesce(t.baseline, 0)
FROM batch_keys k
LEFT JOIN targets t USING (campaign_id, unit, indicator)
WHERE NOT EXISTS (SELECT 1 FROM progress p
                  WHERE p.campaign_id = k.campaign_id AND p.unit = k.unit
                    AND p.indicator = k.indicator)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""


# Lock the touched rows (in a fixed order: replicas cannot deadlock) and remember each
# key's own value and snapshot time before the batch, to spread the difference.
SELECT_KEYS = """
WITH locked AS (
    SELECT p.campaign_id, p.unit, p.indicator, p.snap_at,
           coalesce(p.snap_value, p.own_baseline) + p.incr_after AS own
    FROM progress p
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    ORDER BY 1, 2, 3
    FOR UPDATE OF p
)
UPDATE batch_keys k SET old_own = l.own, snap_at = l.snap_at
FROM locked l
WHERE k.campaign_id = l.campaign_id AND k.unit = l.unit AND k.indicator = l.indicator
"""


# A snapshot replaces the unit's own value when it is the latest (occurred_at, event_id).
UPDATE_SNAPSHOTS = """
WITH latest AS (
    SELECT DISTINCT ON (campaign_id, unit, indicator)
           campaign_id, unit, indicator, occurred_at, event_id, value
    FROM batch_applied
    WHERE kind = 'snapshot'
    ORDER BY campaign_id, unit, indicator, occurred_at DESC, event_id DESC
), moved AS (
    UPDATE progress p
    SET snap_at = l.occurred_at, snap_event_id = l.event_id, snap_value = l.value
    FROM latest l
    WHERE p.campaign_id = l.campaign_id AND p.unit = l.unit AND p.indicator = l.indicator
      AND (p.snap_at IS NULL OR (l.occurred_at, l.event_id) > (p.snap_at, p.snap_event_id))
    RETURNING p.campaign_id, p.unit, p.indicator
)
UPDATE batch_keys k SET resnapped = true
FROM moved m
WHERE k.campaign_id = m.campaign_id AND k.unit = m.unit AND k.indicator = m.indicator
"""


# Increments count after the unit's latest snapshot; a new latest snapshot recounts them.
UPDATE_INCREMENTS = """
-- (k.snap_at is current: only a resnapped key's snapshot moved, and the row is locked.)
UPDATE progress p
SET incr_after = p.incr_after + d.delta
FROM (
    SELECT a.campaign_id, a.unit, a.indicator, sum(a.value) AS delta
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE a.kind = 'increment' AND NOT k.resnapped
      AND (k.snap_at IS NULL OR a.occurred_at > k.snap_at)
    GROUP BY 1, 2, 3
) d
WHERE p.campaign_id = d.campaign_id AND p.unit = d.unit AND p.indicator = d.indicator
"""


RECOUNT_AFTER_SNAPSHOT = """
UPDATE progress p
SET incr_after = coalesce((
    SELECT sum(e.value) FROM events e
    WHERE e.unit = p.unit AND e.indicator = p.indicator AND e.kind = 'increment' AND e.counted
      AND e.occurred_at > p.snap_at AND e.occurred_at <= c.deadline
), 0)
FROM batch_keys k, campaigns c
WHERE k.resnapped AND c.id = k.campaign_id
  AND p.campaign_id = k.campaign_id AND p.unit = k.unit AND p.indicator = k.indicator
"""


# Spread each unit's change of own value to itself and its ancestors (the rollup), and
# return every (campaign, unit, indicator) whose figures moved.
SPREAD = """
-- (The unit's own last event is set by the same upsert: a separate UPDATE of these rows in
-- a CTE of this statement would be one of two changes to one row, and PostgreSQL keeps
-- only one of them.)
WITH own AS (
    SELECT k.campaign_id, k.unit, k.indicator, k.last_at,
           coalesce(p.snap_value, p.own_baseline) + p.incr_after - k.old_own AS delta
    FROM batch_keys k JOIN progress p USING (campaign_id, unit, indicator)
), spread AS (
    SELECT o.campaign_id, lineage.code AS unit, o.indicator,
           sum(o.delta) AS delta, max(o.last_at) AS last_at,
           max(o.last_at) FILTER (WHERE lineage.code = o.unit) AS own_last_at
    FROM own o
    JOIN units u ON u.code = o.unit
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    GROUP BY 1, 2, 3
)
INSERT INTO progress AS p (campaign_id, unit, indicator, value, last_event_at, own_last_event_at)
SELECT campaign_id, unit, indicator, delta, last_at, own_last_at FROM spread ORDER BY 1, 2, 3
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET value = p.value + EXCLUDED.value,
    last_event_at = greatest(p.last_event_at, EXCLUDED.last_event_at),
    own_last_event_at = greatest(p.own_last_event_at, EXCLUDED.own_last_event_at),
    updated_at = now()
RETURNING p.campaign_id, p.unit, p.indicator
"""


# A withdrawn subject winner may have been its unit's last counted event: last events only
# ever move forward in SPREAD, so the units that lost one, and their ancestors, take their
# last event again from what still counts (as the recount and `as_of` do). Rare: only when
# an earlier event of a citizen arrives late.
RELAST_OWN = """
UPDATE progress p
SET own_last_event_at = (
    SELECT max(e.occurred_at) FROM events e
    WHERE e.unit = p.unit AND e.indicator = p.indicator AND e.counted
      AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline)
FROM (SELECT DISTINCT campaign_id, unit, indicator FROM batch_applied WHERE adjustment) a
JOIN campaigns c ON c.id = a.campaign_id
WHERE p.campaign_id = a.campaign_id AND p.unit = a.unit AND p.indicator = a.indicator
"""


RELAST_SUBTREES = """
WITH roots AS (
    SELECT DISTINCT a.campaign_id, lineage.code AS root, a.indicator
    FROM (SELECT DISTINCT campaign_id, unit, indicator FROM batch_applied WHERE adjustment) a
    JOIN units u ON u.code = a.unit
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
)
UPDATE progress p
SET last_event_at = (
    SELECT max(m.own_last_event_at) FROM progress m JOIN units mu ON mu.code = m.unit
    WHERE m.campaign_id = r.campaign_id AND m.indicator = r.indicator
      AND (mu.code = r.root OR r.root = ANY (mu.ancestors)))
FROM roots r
WHERE p.campaign_id = r.campaign_id AND p.unit = r.root AND p.indicator = r.indicator
"""


@dataclass(frozen=True, slots=True)
class Unappliable:
    partition: int
    offset: int
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    new_events: int
    changed: list[tuple[str, str, str]]


async def prepare(conn: Connection) -> None:
    await conn.execute(CREATE_STAGING)


def staging_row(event: Event, partition: int | None, offset: int | None) -> tuple[Any, ...]:
    """An event as a row of `batch_in` (STAGING_COLUMNS)."""
    return (
        event.event_id,
        event.unit,
        event.indicator,
        event.kind.value,
        event.value,
        event.occurred_at,
        event.subject,
        event.received_at,
        event.source,
        partition,
        offset,
    )


async def apply_events(conn: Connection, events: Sequence[Event]) -> BatchOutcome:
    """Apply events outside the consumer, in one transaction: the same statements as a
    consumed batch, without Kafka positions (a replay on simulated time, a test's world).
    Refuses an event whose unit or indicator is unknown."""
    await prepare(conn)
    async with conn.transaction():
        await stage(conn, [staging_row(e, None, None) for e in events])
        unappliable = await take_unappliable(conn)
        if unappliable:
            raise ValueError(f"cannot apply: {unappliable[0].event_id}: {unappliable[0].reason}")
        return await apply_staged(conn)


async def stage(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("batch_in", records=rows, columns=STAGING_COLUMNS)


async def take_unappliable(conn: Connection) -> list[Unappliable]:
    rows = await conn.fetch(TAKE_UNAPPLIABLE)
    return [
        Unappliable(r["kafka_partition"], r["kafka_offset"], r["event_id"], r["reason"])
        for r in rows
    ]


async def lock_apply(conn: Connection) -> None:
    """Wait for any re-plan (admin change) to commit; applies run side by side."""
    await conn.execute(LOCK_APPLY)


async def apply_staged(
    conn: Connection, *, distinct_ids: bool = False, unusable: Sequence[str] = ()
) -> BatchOutcome:
    """Apply what `stage` loaded: dedup, count, roll up. Returns the keys that moved.

    `distinct_ids`: the caller knows no event_id repeats within the batch; `unusable`:
    campaigns to leave out.
    """
    await lock_apply(conn)
    status = await conn.execute(INSERT_NEW_EVENTS_DISTINCT if distinct_ids else INSERT_NEW_EVENTS)
    new_events = int(str(status).rsplit(" ", 1)[-1])
    if new_events == 0:
        return BatchOutcome(0, [])
    if await conn.fetchval("SELECT count(*) FROM batch_new WHERE subject IS NOT NULL"):
        await conn.execute(STAGE_SUBJECTS)
        await conn.execute(LOCK_SUBJECTS)
        await conn.execute(FIND_DETHRONED)
        await conn.execute(MARK_SUBJECT_DUPLICATES)
        await conn.execute(UPSERT_SUBJECT_WINNERS)
    await conn.execute(SELECT_APPLIED, list(unusable))
    await conn.execute(UPSERT_DAILY)
    await conn.execute(GROUP_KEYS)
    await conn.execute(ENSURE_PROGRESS_ROWS)
    await conn.execute(SELECT_KEYS)
    await conn.execute(UPDATE_SNAPSHOTS)
    await conn.execute(UPDATE_INCREMENTS)
    await conn.execute(RECOUNT_AFTER_SNAPSHOT)
    changed = await conn.fetch(SPREAD)
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM batch_applied WHERE adjustment)"):
        await conn.execute(RELAST_OWN)
        await conn.execute(RELAST_SUBTREES)
    return BatchOutcome(new_events, [(r[0], r[1], r[2]) for r in changed])
