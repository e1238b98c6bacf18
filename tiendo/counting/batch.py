"""The live counters' bookkeeping around the rules of `tiendo.counting.rules`: staging a
batch, the idempotency check, the touched keys, the rollup of each change and the locks.
The rules themselves (what counts and how) are not here."""

from typing import Any

from tiendo.counting.content import content_hash
from tiendo.counting.rules import OWN_VALUE
from tiendo.event import Event

# Applying and re-planning (an admin change) both touch `value`; re-planning recomputes it
# from the own columns, so it must not interleave with an apply (a lost update otherwise).
# A rebuild takes the same key for the session.
COUNTERS_LOCK_KEY = 7301118
LOCK_APPLY = f"SELECT pg_advisory_xact_lock_shared({COUNTERS_LOCK_KEY})"
LOCK_REPLAN = f"SELECT pg_advisory_xact_lock({COUNTERS_LOCK_KEY})"

# Temp tables live per connection; the consumer keeps one connection for its life.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS batch_in (
    event_id text, unit text, indicator text, kind text, value bigint,
    occurred_at timestamptz, subject text, received_at timestamptz, source text,
    kafka_partition integer, kafka_offset bigint, content_hash bytea
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
    "content_hash",
)


def staging_row(event: Event, partition: int | None, offset: int | None) -> tuple[Any, ...]:
    """An event as a row of `batch_in` (STAGING_COLUMNS), for COPY."""
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
        content_hash(event),
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
SELECT t.kafka_partition, t.kafka_offset, t.event_id, t.unit, t.indicator,
       CASE WHEN NOT EXISTS (SELECT 1 FROM units u WHERE u.code = t.unit)
            THEN 'unknown unit ' || t.unit
            ELSE 'unknown indicator ' || t.indicator END AS reason
FROM taken t
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id)
"""

# The idempotency check: an event_id is applied once, forever (the primary key of
# `events`). Within one batch the first delivery wins.
_INSERT_NEW_EVENTS = """
WITH inserted AS (
    INSERT INTO events (event_id, unit, indicator, kind, value, occurred_at, subject,
                        received_at, source, kafka_partition, kafka_offset, content_hash)
    SELECT {distinct} event_id, unit, indicator, kind, value, occurred_at, subject,
           received_at, source, kafka_partition, kafka_offset, content_hash
    FROM batch_in
    {order}
    ON CONFLICT (event_id) DO NOTHING
    RETURNING *
)
INSERT INTO batch_new SELECT * FROM inserted
"""
INSERT_NEW_EVENTS = _INSERT_NEW_EVENTS.format(
    distinct="DISTINCT ON (event_id)", order="ORDER BY event_id, kafka_partition, kafka_offset"
)
# The common case, every event_id of the batch distinct: no sort needed.
INSERT_NEW_EVENTS_DISTINCT = _INSERT_NEW_EVENTS.format(distinct="", order="")

# The dead-letter reason of a delivery whose event_id is stored with other content.
CONFLICT = "conflict"

# The deliveries not inserted (their event_id is stored, or came earlier in the batch):
# an exact repeat is counted on the stored event, one with other content is returned, a
# conflict to dead-letter. The stored event stays: the first applied. (Events stored
# before content hashes were kept have none: a repeat, as before.)
SORT_REPEATS = f"""
WITH repeats AS (
    SELECT b.kafka_partition, b.kafka_offset, b.event_id, b.unit, b.indicator,
           coalesce(e.content_hash <> b.content_hash, false) AS conflict
    FROM batch_in b
    JOIN events e USING (event_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM batch_new n
        WHERE n.event_id = b.event_id
          AND n.kafka_partition IS NOT DISTINCT FROM b.kafka_partition
          AND n.kafka_offset IS NOT DISTINCT FROM b.kafka_offset)
), counted AS (
    UPDATE events e SET duplicates = e.duplicates + r.n
    FROM (SELECT event_id, count(*) AS n FROM repeats WHERE NOT conflict GROUP BY 1) r
    WHERE e.event_id = r.event_id
)
SELECT kafka_partition, kafka_offset, event_id, unit, indicator, '{CONFLICT}' AS reason
FROM repeats WHERE conflict
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
SELECT_KEYS = f"""
WITH locked AS (
    SELECT p.campaign_id, p.unit, p.indicator, p.snap_at, {OWN_VALUE} AS own
    FROM progress p
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    ORDER BY 1, 2, 3
    FOR UPDATE OF p
)
UPDATE batch_keys k SET old_own = l.own, snap_at = l.snap_at
FROM locked l
WHERE k.campaign_id = l.campaign_id AND k.unit = l.unit AND k.indicator = l.indicator
"""


# Spread each unit's change of own value to itself and its ancestors (the rollup), and
# return every (campaign, unit, indicator) whose figures moved.
SPREAD = f"""
-- (The unit's own last event is set by the same upsert: a separate UPDATE of these rows in
-- a CTE of this statement would be one of two changes to one row, and PostgreSQL keeps
-- only one of them.)
WITH own AS (
    SELECT k.campaign_id, k.unit, k.indicator, k.last_at, {OWN_VALUE} - k.old_own AS delta
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


# After RELAST_OWN (rule 5): the subtrees of the units that lost their last event take
# theirs again from their members' own.
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
