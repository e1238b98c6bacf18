"""Day rollups of the subtree values (issue 15): what lets a live board say what a unit's
value was a week ago, or at the end of any past day, without reading the event history.

`subtree_days` holds, per (campaign, unit, indicator, local day of the campaign), the change
of the unit's subtree value over that day (`change`) and the counted increments of that day
in the subtree (`increments`, the drill-down's bars). The value at the end of day D is the
live value minus the changes of the days after D:

    value(end of D) = progress.value - sum(change of days > D)

Both forms keep it beside the counters they write, so it is never older than they are:

- **recount** (`RECOUNT_DAY_CHANGES`, run by every re-plan: admin changes, tree changes, the
  rebuild) computes it from the history by the rules of `tiendo.counting`: each own key's
  value at the end of each of its days (its latest snapshot up to then, then the counted
  increments after it; its baseline and the increments without one), differenced day by
  day, summed over each unit's lineage. Exact.
- **apply** (`APPLY_DAY_CHANGES`, one statement after the rollup of the counters in
  `tiendo.counting.apply`) splits each touched key's own change of this batch over days:
  where the key's latest snapshot stayed, the counted increments after it on their own
  days; where it moved, the batch's events after the old one walked in time order (each
  snapshot sets the value, increments add), the value at each day's last of them
  differenced, and what that walk does not explain on the new snapshot's day. The days of
  a key always add up to its live value. Exact for every day when each key's events arrive
  in time order, which is how reports arrive live, and for increments in any order. Out of
  order, where a snapshot is involved, two cases are not redistributed: an event that
  arrives *after* a later snapshot of its key covers it (an increment before the snapshot,
  or an older snapshot) leaves the days between the two as they were; a new latest
  snapshot that arrives after stored events later than the batch's first puts what the
  walk does not explain on its own day. The key's live value is right; the next re-plan
  (any admin change, a tree change, a rebuild) recounts the days exactly. Recounting such
  a key's days from its history in the apply (from its last snapshot before the batch's
  first day, after less before) was measured at ten times the statement's cost on the
  benchmark's mix, whose reports are spread at random over the campaign
  (`tests/counting/test_day_rollups_out_of_order.py` holds these cases, expected to fail).

`tests/boards/test_day_rollups.py` holds both forms equal to the history at every day's end
for in-order arrivals, and to each other.

For `as_of` (the third form of `rules.py`), `AS_OF_FROM_DAYS` below is written and held
equal to `VALUES_AS_OF` by the tests, not used by any reader yet (folding it into
`rules.py` is its owner's call): the value of a root at T, with D the local day of T, is

    progress.value - sum(change of days >= D)            -- its value at the end of D - 1
    + sum over the subtree's own units u of the day D part up to T:
        u's counted increments of day D up to T, or, when u has a snapshot on day D at or
        before T, (its latest such snapshot + the increments after it up to T) minus u's
        own value at the end of D - 1 (its rollup less its children's rollups)

which reads at most one day of events per key; the last event is `progress.last_event_at`
when that is not after T, else the latest of day D up to T, else (rarely: a unit silent
since before D) the history. On the national dataset of `bench.national` (1,000,000
events) it answered a commune in 13 ms against 161 ms, a province and its districts in 31
against 182 ms, the country and its provinces in 1.2 s against 3.7 s (one day of the whole
country's events), every figure equal. It inherits the rollups' one inexact case, so
`tiendo check`, which holds the counters against an independent reading of the history,
must keep `VALUES_AS_OF`.
"""

from collections.abc import Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from tiendo.counting.batch import TREE_AT
from tiendo.counting.rules import IN_CAMPAIGN, LATEST_FIRST, OWN_VALUE
from tiendo.database import Connection

# apply: after `batch.SPREAD` (the keys' own values are final, `batch_keys.old_own` is
# the value before the batch), within the apply's transaction.
APPLY_DAY_CHANGES = f"""
WITH incs AS (
    -- a key whose latest snapshot stayed: each counted increment after it, on its own day
    -- (one the snapshot covers changes nothing now), as `UPDATE_INCREMENTS` counts them;
    -- joined on batch_keys' key, as that statement is (a CTE of the keys, which the
    -- planner cannot see into, made this a nested loop of every event by every key)
    SELECT a.campaign_id, a.unit, a.indicator, a.day,
           coalesce(sum(a.value) FILTER (
               WHERE NOT k.resnapped AND (k.snap_at IS NULL OR a.occurred_at > k.snap_at)
           ), 0) AS change,
           sum(a.value) AS increments, min(k.lineage) AS lineage
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE a.kind = 'increment'
    GROUP BY 1, 2, 3, 4
), steps AS (
    -- a key whose latest snapshot moved: the batch's events after its old one, in time
    -- order (an increment at a snapshot's very moment is before it: the snapshot covers it)
    SELECT a.campaign_id, a.unit, a.indicator, a.day, a.occurred_at, a.event_id, a.kind,
           a.value, k.old_own, k.lineage,
           count(*) FILTER (WHERE a.kind = 'snapshot') OVER (
               PARTITION BY a.campaign_id, a.unit, a.indicator
               ORDER BY a.occurred_at, a.kind = 'snapshot', a.event_id) AS seg
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE k.resnapped AND (k.snap_at IS NULL OR a.occurred_at > k.snap_at)
), valued AS (
    -- the own value after each of them: from the old value, then from each snapshot
    SELECT s.*,
           CASE WHEN s.seg = 0 THEN s.old_own ELSE first_value(s.value) OVER w END
           + sum(CASE WHEN s.kind = 'increment' THEN s.value ELSE 0 END) OVER w AS after
    FROM steps s
    WINDOW w AS (PARTITION BY s.campaign_id, s.unit, s.indicator, s.seg
                 ORDER BY s.occurred_at, s.kind = 'snapshot', s.event_id)
), day_ends AS (
    SELECT DISTINCT ON (campaign_id, unit, indicator, day)
           campaign_id, unit, indicator, day, old_own, after, lineage
    FROM valued
    ORDER BY campaign_id, unit, indicator, day,
             occurred_at DESC, kind = 'snapshot' DESC, event_id DESC
), modeled AS (
    SELECT campaign_id, unit, indicator, day,
           after - coalesce(
               lag(after) OVER (PARTITION BY campaign_id, unit, indicator ORDER BY day), old_own
           ) AS change,
           0::bigint AS increments, lineage
    FROM day_ends
), rest AS (
    -- what the time order does not explain (events of the batch older than stored ones of
    -- the key), on the new snapshot's day: the days still add up to the live value
    SELECT k.campaign_id, k.unit, k.indicator, (p.snap_at AT TIME ZONE c.timezone)::date AS day,
           {OWN_VALUE} - k.old_own - coalesce(sum(m.change), 0) AS change,
           0::bigint AS increments, k.lineage
    FROM batch_keys k
    JOIN progress p USING (campaign_id, unit, indicator)
    JOIN campaigns c ON c.id = k.campaign_id
    LEFT JOIN modeled m USING (campaign_id, unit, indicator)
    WHERE k.resnapped
    GROUP BY k.campaign_id, k.unit, k.indicator, p.snap_at, c.timezone, p.snap_value,
             p.own_baseline, p.incr_after, k.old_own, k.lineage
), own_days AS (
    SELECT * FROM incs
    UNION ALL
    SELECT * FROM modeled
    UNION ALL
    SELECT * FROM rest WHERE change <> 0
), spread AS (
    SELECT d.campaign_id, lineage.code AS unit, d.indicator, d.day,
           sum(d.change) AS change, sum(d.increments) AS increments
    FROM own_days d
    -- where the key's figures land on its campaign's tree, as `batch.SPREAD` spreads them:
    -- the key's lineage, carried along (a version carried by shares has none: its days are
    -- not kept, on either form)
    CROSS JOIN LATERAL unnest(d.lineage) AS lineage (code)
    GROUP BY 1, 2, 3, 4
)
INSERT INTO subtree_days AS s (campaign_id, unit, indicator, day, change, increments)
SELECT * FROM spread
WHERE change <> 0 OR increments <> 0
ORDER BY 1, 2, 3, 4  -- replicas lock rows in one order: no deadlock between them
ON CONFLICT (campaign_id, unit, indicator, day) DO UPDATE
SET change = s.change + EXCLUDED.change, increments = s.increments + EXCLUDED.increments
"""

# recount: one campaign's rows from its stored events ($1), after its progress rows hold
# their own baselines (`apply_plan`). The campaign CTE is `c`, as `IN_CAMPAIGN` names it.
RECOUNT_DAY_CHANGES = (
    "DELETE FROM subtree_days WHERE campaign_id = $1",
    f"""
WITH c AS (
    SELECT * FROM campaigns WHERE id = $1
), ev AS (
    SELECT e.unit, e.indicator, (e.occurred_at AT TIME ZONE c.timezone)::date AS day,
           e.kind, e.value, e.occurred_at, e.event_id
    FROM events e JOIN c ON {IN_CAMPAIGN}
    WHERE e.counted
), snaps AS (
    -- each key's latest snapshot of each day
    SELECT DISTINCT ON (e.unit, e.indicator, e.day)
           e.unit, e.indicator, e.day, e.occurred_at AS snap_at, e.value AS snap_value
    FROM ev e
    WHERE e.kind = 'snapshot'
    ORDER BY e.unit, e.indicator, e.day, {LATEST_FIRST}
), days AS (
    SELECT ev.unit, ev.indicator, ev.day, s.snap_value,
           coalesce(sum(ev.value) FILTER (WHERE ev.kind = 'increment'), 0) AS increments,
           coalesce(sum(ev.value) FILTER (
               WHERE ev.kind = 'increment' AND ev.occurred_at > s.snap_at), 0) AS after_snap
    FROM ev
    LEFT JOIN snaps s USING (unit, indicator, day)
    GROUP BY ev.unit, ev.indicator, ev.day, s.snap_value, s.snap_at
), segments AS (
    -- a segment: a day with a snapshot and the days after it without one
    SELECT d.*, count(d.snap_value) OVER (PARTITION BY d.unit, d.indicator ORDER BY d.day) AS seg
    FROM days d
), ends AS (
    -- the own value at each day's end
    SELECT s.unit, s.indicator, s.day, s.increments, coalesce(p.own_baseline, 0) AS base,
           CASE WHEN s.seg = 0
                THEN coalesce(p.own_baseline, 0) + sum(s.increments) OVER w
                ELSE first_value(s.snap_value + s.after_snap) OVER w
                     + sum(s.increments) OVER w - first_value(s.increments) OVER w
           END AS end_value
    FROM segments s
    LEFT JOIN progress p ON p.campaign_id = $1 AND p.unit = s.unit AND p.indicator = s.indicator
    WINDOW w AS (PARTITION BY s.unit, s.indicator, s.seg ORDER BY s.day)
), own AS (
    SELECT unit, indicator, day, increments,
           end_value - coalesce(
               lag(end_value) OVER (PARTITION BY unit, indicator ORDER BY day), base
           ) AS change
    FROM ends
)
INSERT INTO subtree_days (campaign_id, unit, indicator, day, change, increments)
SELECT $1, lineage.code, o.indicator, o.day, sum(o.change), sum(o.increments)
FROM own o
JOIN c ON true
JOIN unit_anchors a ON a.tree_at = {TREE_AT} AND a.unit = o.unit
JOIN units u ON u.code = a.anchor
CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
GROUP BY 2, 3, 4
""",
)


# The staging tables are temporary, so autovacuum never gives the planner their sizes:
# with none for the keys, a backlog's batch (20,000 events) had its (key, day) rows sorted
# and looked up one by one instead of hashed. The keys' statistics, for large batches
# only: on a live batch of 1,000 events the analysis cost more (3 ms) than it saved.
ANALYZE_WORTH = "SELECT count(*) >= 5000 FROM batch_applied"
ANALYZE_BATCH = "ANALYZE batch_keys"


async def apply_days(conn: Connection) -> None:
    """Add the applied batch's changes to the day rollups (inside `apply`'s transaction)."""
    if await conn.fetchval(ANALYZE_WORTH):
        await conn.execute(ANALYZE_BATCH)
    await conn.execute(APPLY_DAY_CHANGES)


async def recount_days(conn: Connection, campaign_id: str) -> None:
    """One campaign's day rollups again from its stored events (inside a re-plan)."""
    for statement in RECOUNT_DAY_CHANGES:
        await conn.execute(statement, campaign_id)


# as_of from the rollups (see the module's docstring: not used yet; `rules.VALUES_AS_OF`
# stays the form every reader uses). $1 the roots, $2 the campaign, $3 its indicators, $4
# its start, $5 the moment (at most its deadline), $6 the moment's local day, $7 that day's
# local midnight.
AS_OF_FROM_DAYS = """
WITH roots AS (
    SELECT DISTINCT code FROM unnest($1::text[]) AS r (code)
), members AS (
    SELECT lineage.code AS root, u.code
    FROM units u CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    JOIN roots ON roots.code = lineage.code
), own_units AS (
    SELECT DISTINCT code FROM members
), ends AS (
    -- each subtree's value at the end of the day before: live less that day's and later
    SELECT p.unit, p.indicator, p.parent, p.value - coalesce(sum(d.change), 0) AS value
    FROM (
        SELECT p.unit, p.indicator, p.value, u.parent_code AS parent
        FROM progress p
        JOIN own_units o ON o.code = p.unit
        JOIN units u ON u.code = p.unit
        WHERE p.campaign_id = $2 AND p.indicator = ANY ($3::text[])
    ) p
    LEFT JOIN subtree_days d
           ON d.campaign_id = $2 AND d.unit = p.unit AND d.indicator = p.indicator
          AND d.day >= $6::date
    GROUP BY p.unit, p.indicator, p.parent, p.value
), child_ends AS (
    SELECT parent, indicator, sum(value) AS value FROM ends GROUP BY 1, 2
), day_events AS (
    -- the one day of events: the moment's day up to the moment
    SELECT e.unit, e.indicator, e.kind, e.value, e.occurred_at, e.event_id
    FROM events e JOIN own_units o ON o.code = e.unit
    WHERE e.indicator = ANY ($3::text[]) AND e.counted
      AND e.occurred_at >= greatest($7::timestamptz, $4::timestamptz) AND e.occurred_at <= $5
), day_snaps AS (
    SELECT DISTINCT ON (e.unit, e.indicator) e.unit, e.indicator, e.occurred_at, e.value
    FROM day_events e
    WHERE e.kind = 'snapshot'
    ORDER BY e.unit, e.indicator, e.occurred_at DESC, e.event_id DESC
), parts AS (
    -- each own unit's change over the day up to the moment
    SELECT e.unit, e.indicator, max(e.occurred_at) AS last_at,
           CASE WHEN s.unit IS NULL THEN 0
                -- a snapshot that day: its value and what follows, less the own value at
                -- the day's start (the unit's subtree less its children's)
                ELSE s.value - (min(ue.value) - coalesce(min(ce.value), 0))
           END
           + coalesce(sum(e.value) FILTER (
               WHERE e.kind = 'increment' AND (s.unit IS NULL OR e.occurred_at > s.occurred_at)
           ), 0) AS change
    FROM day_events e
    LEFT JOIN day_snaps s USING (unit, indicator)
    LEFT JOIN ends ue ON ue.unit = e.unit AND ue.indicator = e.indicator
    LEFT JOIN child_ends ce ON ce.parent = e.unit AND ce.indicator = e.indicator
    GROUP BY e.unit, e.indicator, s.unit, s.value
), figures AS (
    SELECT m.root, x.indicator, (x.value + coalesce(sum(pt.change), 0))::bigint AS value,
           max(p.last_event_at) AS live_last, max(pt.last_at) AS day_last
    FROM (SELECT DISTINCT root FROM members) m
    JOIN ends x ON x.unit = m.root
    JOIN progress p ON p.campaign_id = $2 AND p.unit = m.root AND p.indicator = x.indicator
    LEFT JOIN members mm ON mm.root = m.root
    LEFT JOIN parts pt ON pt.unit = mm.code AND pt.indicator = x.indicator
    GROUP BY m.root, x.indicator, x.value
), before_day AS (
    -- a root silent all that day whose last report came after the moment: the history
    -- before the day (rare for a large subtree), read for those roots only
    SELECT f.root, f.indicator, l.last_at
    FROM figures f
    CROSS JOIN LATERAL (
        SELECT max(e.occurred_at) AS last_at
        FROM members m2
        JOIN events e ON e.unit = m2.code AND e.indicator = f.indicator
        WHERE m2.root = f.root AND e.counted AND e.occurred_at >= $4::timestamptz
          AND e.occurred_at < greatest($7::timestamptz, $4::timestamptz)
    ) l
    WHERE f.live_last > $5::timestamptz AND f.day_last IS NULL
)
SELECT f.root, f.indicator, f.value,
       CASE WHEN f.live_last <= $5::timestamptz THEN f.live_last
            ELSE coalesce(f.day_last, b.last_at) END AS last_event_at
FROM figures f
LEFT JOIN before_day b USING (root, indicator)
"""


async def as_of_from_days(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    timezone: str,
    at: datetime,
) -> dict[tuple[str, str], tuple[int, datetime | None]]:
    """`tiendo.counting.as_of` from the rollups and the moment's day of events: (indicator,
    root) → (value, last event). `at` at most the deadline. Not used by any reader yet."""
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date()
    midnight = datetime.combine(day, time(0), tzinfo=zone)
    async with conn.transaction():
        # The planner's estimate of this plan passes the JIT threshold; compiling it took
        # 0.9 s of a 1 s read of one commune. (LOCAL: the caller's transaction, if any.)
        await conn.execute("SET LOCAL jit = off")
        rows = await conn.fetch(
            AS_OF_FROM_DAYS,
            list(roots),
            campaign_id,
            list(indicators),
            starts_at,
            at,
            day,
            midnight,
        )
    return {(r["indicator"], r["root"]): (r["value"], r["last_event_at"]) for r in rows}
