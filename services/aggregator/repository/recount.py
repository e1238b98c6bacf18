"""Counters recomputed from the stored events: the rebuild, and a campaign's recount
after an admin change."""

from collections.abc import Sequence

from tiendo.database import Connection

# -- rebuild: every counter recomputed from the stored events ---------------------------
LOCK_REBUILD = "SELECT pg_advisory_lock(7301118)"


UNLOCK_REBUILD = "SELECT pg_advisory_unlock(7301118)"


DELETE_EVENTS_FROM = """
DELETE FROM events e
USING unnest($1::int[], $2::bigint[]) AS f (partition, first_offset)
WHERE e.kafka_partition = f.partition AND e.kafka_offset >= f.first_offset
"""


RECOUNT_SUBJECTS = """
TRUNCATE subjects;
INSERT INTO subjects (indicator, subject, event_id, occurred_at, unit)
SELECT DISTINCT ON (indicator, subject) indicator, subject, event_id, occurred_at, unit
FROM events
WHERE subject IS NOT NULL AND kind = 'increment'
ORDER BY indicator, subject, occurred_at, event_id;
UPDATE events e
SET counted = (e.subject IS NULL OR e.kind <> 'increment'
               OR EXISTS (SELECT 1 FROM subjects s WHERE s.event_id = e.event_id))
WHERE e.subject IS NOT NULL;
"""


# The recount: daily counts and the own columns of `progress` from the stored events, for
# one campaign ($1) or every campaign ($1 null), leaving out the campaigns flagged unusable
# ($2; their figures stay as they are until a fix through the admin API recounts them).
# Rebuild and the admin changes (a campaign created, its window, indicators, timezone or
# targets changed after its events arrived) share these statements: the rules of what
# counts are the live apply's (`SELECT_APPLIED`, `UPDATE_SNAPSHOTS`, `UPDATE_INCREMENTS`).
RECOUNT_SCOPE = "($1::text IS NULL OR {col} = $1) AND {col} <> ALL ($2::text[])"


RECOUNT_DAILY = (
    "DELETE FROM daily_counts WHERE " + RECOUNT_SCOPE.format(col="campaign_id"),
    """
INSERT INTO daily_counts (campaign_id, unit, indicator, day, increments, events)
SELECT c.id, e.unit, e.indicator, (e.occurred_at AT TIME ZONE c.timezone)::date,
       coalesce(sum(e.value) FILTER (WHERE e.kind = 'increment'), 0), count(*)
FROM events e
JOIN campaigns c ON e.indicator = ANY (c.indicators)
                AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline
WHERE e.counted AND """
    + RECOUNT_SCOPE.format(col="c.id")
    + """
GROUP BY 1, 2, 3, 4
""",
)


RECOUNT_OWN = (
    """
UPDATE progress SET snap_at = NULL, snap_event_id = NULL, snap_value = NULL, incr_after = 0,
                    own_last_event_at = NULL
WHERE """
    + RECOUNT_SCOPE.format(col="campaign_id"),
    """
WITH snaps AS (
    SELECT DISTINCT ON (c.id, e.unit, e.indicator)
           c.id AS campaign_id, e.unit, e.indicator, e.occurred_at, e.event_id, e.value
    FROM events e
    JOIN campaigns c ON e.indicator = ANY (c.indicators)
                    AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline
    WHERE e.kind = 'snapshot' AND """
    + RECOUNT_SCOPE.format(col="c.id")
    + """
    ORDER BY c.id, e.unit, e.indicator, e.occurred_at DESC, e.event_id DESC
)
UPDATE progress p SET snap_at = s.occurred_at, snap_event_id = s.event_id, snap_value = s.value
FROM snaps s
WHERE p.campaign_id = s.campaign_id AND p.unit = s.unit AND p.indicator = s.indicator
""",
    """
WITH own AS (
    SELECT p.campaign_id, p.unit, p.indicator,
           coalesce(sum(e.value) FILTER (
               WHERE e.kind = 'increment' AND (p.snap_at IS NULL OR e.occurred_at > p.snap_at)
           ), 0) AS incr_after,
           max(e.occurred_at) AS last_at
    FROM events e
    JOIN campaigns c ON e.indicator = ANY (c.indicators)
                    AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline
    JOIN progress p ON p.campaign_id = c.id AND p.unit = e.unit AND p.indicator = e.indicator
    WHERE e.counted AND """
    + RECOUNT_SCOPE.format(col="c.id")
    + """
    GROUP BY 1, 2, 3
)
UPDATE progress p SET incr_after = o.incr_after, own_last_event_at = o.last_at
FROM own o
WHERE p.campaign_id = o.campaign_id AND p.unit = o.unit AND p.indicator = o.indicator
""",
)


async def recount(
    conn: Connection, campaign_id: str | None = None, unusable: Sequence[str] = ()
) -> None:
    """Recount `daily_counts` and the own columns of `progress` from the stored events, for
    one campaign or (None) all of them but the `unusable` ones. Needs the campaign's
    progress rows (`ENSURE_CAMPAIGN_ROWS`); values are rolled up by `RECOMPUTE_VALUES`."""
    for statement in (*RECOUNT_DAILY, *RECOUNT_OWN):
        await conn.execute(statement, campaign_id, list(unusable))
