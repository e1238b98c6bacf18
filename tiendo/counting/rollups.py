"""Day rollups of the subtree values (issue 15): what lets a live board say what a unit's
value was a week ago, or at the end of any past day, without reading the event history.

`subtree_days` holds, per (campaign, unit, indicator, local day of the campaign), the change
of the unit's subtree value over that day (`change`), the counted increments of that day
in the subtree (`increments`, the drill-down's bars) and how many counted events it had
(`events`: the metrics' events of today, the briefing's history version; a withdrawn
subject winner no longer counts on its day). The value at the end of day D is the live
value minus the changes of the days after D:

    value(end of D) = progress.value - sum(change of days > D)

The tree's first two levels (`HOURLY_LEVELS`: the country and its provinces; a city and its
communes) also keep each hour's change of their days (`hours`, hour h of the local day from
its start, `rules.local_hour`), so that `as_of` of their large subtrees reads the events of
the moment's hour only, not of half its day:

    value(start of hour h of D) = value(end of D) - sum(hours[h + 1:] of D)

Both forms model the own changes by hour (a day's change is its hours' sum) and lay out the
first levels' hours; deeper units keep none (they are read unit by unit, and hours on every
unit would cost the apply about a fifth more rows). A day rolled up before the hours were
kept (aggregator migration 016) has none until its campaign's next recount.

Both forms keep it beside the counters they write, so it is never older than they are:

- **recount** (`RECOUNT_DAY_CHANGES`, run by every re-plan: admin changes, tree changes, the
  rebuild) computes it from the history by the rules of `tiendo.counting`: each own key's
  value at the end of each of its days (its latest snapshot up to then, then the counted
  increments after it; its baseline and the increments without one), differenced day by
  day, summed over each unit's lineage. Exact.
- **apply** (`APPLY_DAY_CHANGES`, one statement after the rollup of the counters in
  `tiendo.counting.apply`) splits each touched key's own change of this batch over days
  and hours, in one of three ways by how the batch stands to what the key has stored:
  - *after all of it* (how reports arrive live): where the key's latest snapshot stayed,
    the counted increments after it on their own days and hours; where it moved, the
    batch's events walked in time order from the value before the batch (each snapshot
    sets the value, increments add), the value at each hour's last of them differenced;
  - *increments its latest snapshot covers* (dated before it: a late report, a withdrawn
    citizen's winner), on a key without snapshots in the batch: each moves the value
    from its hour until the first snapshot at or after it, which covers it (`covered`);
  - *anything else with a snapshot involved* (an older snapshot arriving late, a new
    latest snapshot before stored events): the key's events walked again, from its
    latest stored snapshot before the batch's first event to its first snapshot after
    the batch's last, in the history with the batch and in the history before it; each
    hour's change with the batch less its change before (`rewalked`).

  Exact for every day and hour, in any order of arrival; the days of a key add up to its
  live value. What it costs: on the benchmark's mix, whose reports are spread at random
  over 20 days (most keys with snapshots late in every batch), the statement takes about
  two fifths more and the apply about an eighth less; in time order, nothing measurable
  (docs/capacity.md). `tests/counting/test_day_rollups_out_of_order.py` holds it to the
  recount in shuffled and reversed orders.

`tests/boards/test_day_rollups.py` holds both forms equal to the history at every day's end
and, on the first levels, every hour's, and to each other.

`as_of` reads them too (`tiendo.counting.as_of_days`): a past moment from the rollups and
at most one day of events per key.
"""

from tiendo.counting.batch import TREE_AT
from tiendo.counting.rules import (
    IN_CAMPAIGN,
    LATEST_FIRST,
    LOCAL_DAY,
    LOCAL_HOUR,
    MOVES_OWN_VALUE,
    local_day,
    local_hour,
)
from tiendo.database import Connection

# The tree's first levels (the country and its provinces; a city and its communes) keep
# the change of each hour of their days (`hours`), for `as_of` of their large subtrees
# (`tiendo.counting.as_of_days`). Deeper units do not: their subtrees' days are read unit
# by unit, and an hour for every unit would cost the apply a fifth more rows.
HOURLY_LEVELS = 2

# A local day has at most 25 hours (the day clocks go back); `hours[h + 1]` is hour h's
# change (`rules.local_hour`).
DAY_HOURS = 25


def hours_of(change: str, hour: str) -> str:
    """A group's changes by hour as the `hours` array (an aggregate over rows of one
    change each, `change` in hour `hour`)."""
    cells = (f"coalesce(sum({change}) FILTER (WHERE {hour} = {h}), 0)" for h in range(DAY_HOURS))
    return f"ARRAY[{', '.join(cells)}]::bigint[]"


def spread_by_day(own: str) -> str:
    """The CTEs `landed` and `spread` (both forms'): `own`'s rows (a key's own change of an
    hour of a day, with its increments, its events and its `lineage`) where they land on
    the campaign's tree, as `batch.SPREAD` spreads the counters, summed by day, with the
    `hours` of the first levels' days (null on deeper units)."""
    return f"""landed AS (
    -- the key's lineage, carried along (a version carried by shares has none: its days
    -- are not kept, on either form); the hour on the first levels only
    SELECT d.campaign_id, lineage.code AS unit, d.indicator, d.day, d.change, d.increments,
           d.events, CASE WHEN lineage.level <= {HOURLY_LEVELS} THEN d.hour END AS hour
    FROM {own} d
    CROSS JOIN LATERAL unnest(d.lineage) WITH ORDINALITY AS lineage (code, level)
), spread AS (
    -- (sums cast back to bigint at each step: a sum of numerics, which a bigint's sum is,
    -- cost the apply's statement a seventh more)
    SELECT campaign_id, unit, indicator, day,
           sum(change)::bigint AS change, sum(increments)::bigint AS increments,
           sum(events)::bigint AS events,
           CASE WHEN bool_or(hour IS NOT NULL) THEN {hours_of("change", "hour")} END AS hours
    FROM landed
    GROUP BY 1, 2, 3, 4
)"""


# Two days' `hours` added, cell by cell (null where either is: a day rolled up before the
# hours were kept has none until the next recount, and `as_of` then reads its whole day).
ADD_HOURS = (
    "CASE WHEN s.hours IS NULL OR EXCLUDED.hours IS NULL THEN NULL ELSE ARRAY["
    + ", ".join(f"s.hours[{i}] + EXCLUDED.hours[{i}]" for i in range(1, DAY_HOURS + 1))
    + "]::bigint[] END"
)

# The batch's events of a key that come before what it has stored, where a snapshot is
# involved (`k` its batch_keys row, `first_at` its batch's earliest event, withdrawn
# winners included): a snapshot of the batch and an event at or before the stored latest
# snapshot (an older snapshot, or one that covers an increment), or a new latest snapshot
# with stored events at or after the batch's first. Such a key's days are walked again
# from the history (`rewalked`). Every other key's batch either comes after all it has
# stored (its own events tell each day's change) or has no snapshot, where an increment
# its latest snapshot covers moves the days up to the snapshot after it (`covered`).
REWALKED = (
    "coalesce(k.snapshots AND (k.first_at <= k.snap_at"
    " OR (k.resnapped AND k.first_at <= k.old_last_at)), false)"
)

# apply: after `batch.SPREAD` (the keys' own values are final, `batch_keys.old_own` is
# the value before the batch), within the apply's transaction.
APPLY_DAY_CHANGES = f"""
WITH incs AS (
    -- every key's counted increments and events of each day; where its latest snapshot
    -- stayed, each counted increment after it changes its day (one the snapshot covers
    -- changes nothing now), as `rules.BATCH_INCREMENTS` counts them; joined on batch_keys'
    -- key, as that is (a CTE of the keys, which the planner cannot see into, made this a
    -- nested loop of every event by every key)
    SELECT a.campaign_id, a.unit, a.indicator, a.day, a.hour,
           coalesce(sum(a.value) FILTER (WHERE {MOVES_OWN_VALUE} AND NOT {REWALKED}), 0)::bigint
               AS change,
           coalesce(sum(a.value) FILTER (WHERE a.kind = 'increment'), 0)::bigint AS increments,
           -- a withdrawn subject winner no longer counts on its day
           count(*) FILTER (WHERE NOT a.adjustment) - count(*) FILTER (WHERE a.adjustment)
               AS events,
           min(k.lineage) AS lineage
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    GROUP BY 1, 2, 3, 4, 5
), steps AS (
    -- a key whose latest snapshot moved: the batch's events after its old one, in time
    -- order (an increment at a snapshot's very moment is before it: the snapshot covers it)
    SELECT a.campaign_id, a.unit, a.indicator, a.day, a.hour, a.occurred_at, a.event_id, a.kind,
           a.value, k.old_own, k.lineage,
           count(*) FILTER (WHERE a.kind = 'snapshot') OVER (
               PARTITION BY a.campaign_id, a.unit, a.indicator
               ORDER BY a.occurred_at, a.kind = 'snapshot', a.event_id) AS seg
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE k.resnapped AND NOT {REWALKED}
), valued AS (
    -- the own value after each of them: from the old value, then from each snapshot
    SELECT s.*,
           CASE WHEN s.seg = 0 THEN s.old_own ELSE first_value(s.value) OVER w END
           + (sum(CASE WHEN s.kind = 'increment' THEN s.value ELSE 0 END) OVER w)::bigint
               AS after
    FROM steps s
    WINDOW w AS (PARTITION BY s.campaign_id, s.unit, s.indicator, s.seg
                 ORDER BY s.occurred_at, s.kind = 'snapshot', s.event_id)
), hour_ends AS (
    SELECT DISTINCT ON (campaign_id, unit, indicator, day, hour)
           campaign_id, unit, indicator, day, hour, old_own, after, lineage
    FROM valued
    ORDER BY campaign_id, unit, indicator, day, hour,
             occurred_at DESC, kind = 'snapshot' DESC, event_id DESC
), modeled AS (
    SELECT campaign_id, unit, indicator, day, hour,
           after - coalesce(
               lag(after) OVER (PARTITION BY campaign_id, unit, indicator ORDER BY day, hour),
               old_own
           ) AS change,
           0::bigint AS increments, 0::bigint AS events, lineage
    FROM hour_ends
), covered AS (
    -- an increment of the batch (or a withdrawn winner) that the stored latest snapshot
    -- of its key covers, on a key without snapshots in the batch: it moves the own value
    -- from its hour until the first snapshot at or after it (the one that covers it)
    SELECT a.campaign_id, a.unit, a.indicator, a.day, a.hour, a.value, k.lineage,
           n.occurred_at AS covered_at
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    CROSS JOIN LATERAL (
        SELECT e.occurred_at FROM events e
        WHERE e.unit = a.unit AND e.indicator = a.indicator AND e.kind = 'snapshot'
          AND e.occurred_at >= a.occurred_at AND e.occurred_at <= k.snap_at
        ORDER BY e.occurred_at
        LIMIT 1
    ) n
    WHERE a.kind = 'increment' AND NOT k.snapshots AND a.occurred_at <= k.snap_at
), covered_hours AS (
    SELECT campaign_id, unit, indicator, day, hour, value AS change,
           0::bigint AS increments, 0::bigint AS events, lineage
    FROM covered
    UNION ALL
    SELECT v.campaign_id, v.unit, v.indicator,
           {local_day("v.covered_at")}, {local_hour("v.covered_at")}, -v.value,
           0::bigint, 0::bigint, v.lineage
    FROM covered v
    JOIN campaigns c ON c.id = v.campaign_id
), walk_keys AS MATERIALIZED (
    -- a key's walk starts at its latest stored snapshot before the batch's first event
    -- (else at the campaign's start, from its baseline): the value there is the same with
    -- the batch and without it; and it ends at its first snapshot after the batch's last
    -- (else at the campaign's end): from there on the two are the same again. (Looked up
    -- once per key: inlined, the look-ups ran once per event walked.) Each key is walked
    -- by a number (`kid`), its campaign's time zone and bounds beside it: the walk's sorts
    -- and windows compare a number, and its lineage joins the few hours that moved.
    SELECT row_number() OVER () AS kid, k.campaign_id, k.unit, k.indicator, k.lineage,
           c.timezone, c.starts_at, c.deadline,
           s.occurred_at AS anchor_at, s.event_id AS anchor_id,
           coalesce(s.value, p.own_baseline) AS start_value,
           coalesce(n.occurred_at, c.deadline) AS end_at
    FROM batch_keys k
    JOIN campaigns c ON c.id = k.campaign_id
    JOIN progress p
      ON p.campaign_id = k.campaign_id AND p.unit = k.unit AND p.indicator = k.indicator
    LEFT JOIN LATERAL (
        SELECT e.occurred_at, e.event_id, e.value FROM events e
        WHERE e.unit = k.unit AND e.indicator = k.indicator AND e.kind = 'snapshot'
          AND e.occurred_at >= c.starts_at AND e.occurred_at < k.first_at
        ORDER BY e.occurred_at DESC, e.event_id DESC
        LIMIT 1
    ) s ON true
    LEFT JOIN LATERAL (
        SELECT e.occurred_at FROM events e
        WHERE e.unit = k.unit AND e.indicator = k.indicator AND e.kind = 'snapshot'
          AND e.occurred_at > k.through_at AND e.occurred_at <= c.deadline
        ORDER BY e.occurred_at
        LIMIT 1
    ) n ON true
    WHERE {REWALKED}
), walked AS (
    -- its counted events after that, each in the history with the batch (`in_new`:
    -- counted now) and in the history before it (`in_old`: stored and counted before, a
    -- withdrawn winner too). (The key is `c`: it carries the campaign's time zone, which
    -- the local day and hour read.)
    SELECT c.kid, c.campaign_id, c.unit, c.indicator, c.start_value,
           {LOCAL_DAY} AS day, {LOCAL_HOUR} AS hour,
           e.occurred_at, e.kind = 'snapshot' AS snap, e.event_id, e.value,
           e.counted AS in_new,
           (e.counted AND a.event_id IS NULL) OR coalesce(a.adjustment, false) AS in_old
    FROM walk_keys c
    JOIN events e
      ON e.unit = c.unit AND e.indicator = c.indicator
     AND e.occurred_at >= coalesce(c.anchor_at, c.starts_at) AND e.occurred_at <= c.end_at
    LEFT JOIN batch_applied a ON a.campaign_id = c.campaign_id AND a.event_id = e.event_id
    WHERE (e.counted OR a.adjustment)
      AND (c.anchor_at IS NULL
           OR (e.occurred_at, e.kind = 'snapshot', e.event_id) > (c.anchor_at, true, c.anchor_id))
), walked_segments AS (
    SELECT x.*,
           count(*) FILTER (WHERE x.in_new AND x.snap) OVER o AS seg_new,
           count(*) FILTER (WHERE x.in_old AND x.snap) OVER o AS seg_old
    FROM walked x
    WINDOW o AS (PARTITION BY x.kid ORDER BY x.occurred_at, x.snap, x.event_id)
), walked_values AS (
    -- the own value after each event in either history: the segment's snapshot (none
    -- before the first: the start), then the increments since
    SELECT x.*,
           CASE WHEN x.seg_new > 0 THEN first_value(x.value) OVER ws END AS new_base,
           coalesce(sum(x.value) FILTER (WHERE x.in_new AND NOT x.snap) OVER ws, 0)::bigint
               AS new_incs,
           CASE WHEN x.seg_old > 0 THEN first_value(x.value) OVER wo END AS old_base,
           coalesce(sum(x.value) FILTER (WHERE x.in_old AND NOT x.snap) OVER wo, 0)::bigint
               AS old_incs
    FROM walked_segments x
    WINDOW ws AS (PARTITION BY x.kid, x.seg_new ORDER BY x.occurred_at, x.snap, x.event_id),
           wo AS (PARTITION BY x.kid, x.seg_old ORDER BY x.occurred_at, x.snap, x.event_id)
), walked_ends AS (
    SELECT DISTINCT ON (kid, day, hour)
           kid, campaign_id, unit, indicator, day, hour, start_value,
           coalesce(new_base, start_value) + new_incs AS new_value,
           coalesce(old_base, start_value) + old_incs AS old_value
    FROM walked_values
    ORDER BY kid, day, hour, occurred_at DESC, snap DESC, event_id DESC
), walked_changes AS (
    -- each hour's change with the batch less its change before it: what the batch adds
    SELECT campaign_id, unit, indicator, day, hour,
           new_value - coalesce(lag(new_value) OVER h, start_value)
           - (old_value - coalesce(lag(old_value) OVER h, start_value)) AS change
    FROM walked_ends
    WINDOW h AS (PARTITION BY kid ORDER BY day, hour)
), rewalked AS (
    SELECT d.campaign_id, d.unit, d.indicator, d.day, d.hour, d.change,
           0::bigint AS increments, 0::bigint AS events, k.lineage
    FROM walked_changes d
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE d.change <> 0
), own_hours AS (
    SELECT * FROM incs
    UNION ALL
    SELECT * FROM modeled
    UNION ALL
    SELECT * FROM rewalked
    UNION ALL
    SELECT * FROM covered_hours
), {spread_by_day("own_hours")}
INSERT INTO subtree_days AS s
    (campaign_id, unit, indicator, day, change, increments, events, hours)
SELECT campaign_id, unit, indicator, day, change, increments, events, hours
FROM spread
-- (a day's hours can move while the day does not: a withdrawn citizen's event and the
-- one that replaced it, hours apart)
WHERE change <> 0 OR increments <> 0 OR events <> 0 OR 0 <> ANY (hours)
ORDER BY 1, 2, 3, 4  -- replicas lock rows in one order: no deadlock between them
ON CONFLICT (campaign_id, unit, indicator, day) DO UPDATE
SET change = s.change + EXCLUDED.change, increments = s.increments + EXCLUDED.increments,
    events = s.events + EXCLUDED.events, hours = {ADD_HOURS}
"""

# recount: one campaign's rows from its stored events ($1), after its progress rows hold
# their own baselines (`apply_plan`). The campaign CTE is `c`, as `IN_CAMPAIGN` names it.
RECOUNT_DAY_CHANGES = (
    "DELETE FROM subtree_days WHERE campaign_id = $1",
    f"""
WITH c AS (
    SELECT * FROM campaigns WHERE id = $1
), ev AS (
    SELECT e.unit, e.indicator, {LOCAL_DAY} AS day, {LOCAL_HOUR} AS hour,
           e.kind, e.value, e.occurred_at, e.event_id
    FROM events e JOIN c ON {IN_CAMPAIGN}
    WHERE e.counted
), snaps AS (
    -- each key's latest snapshot of each hour
    SELECT DISTINCT ON (e.unit, e.indicator, e.day, e.hour)
           e.unit, e.indicator, e.day, e.hour, e.occurred_at AS snap_at, e.value AS snap_value
    FROM ev e
    WHERE e.kind = 'snapshot'
    ORDER BY e.unit, e.indicator, e.day, e.hour, {LATEST_FIRST}
), hours AS (
    SELECT ev.unit, ev.indicator, ev.day, ev.hour, s.snap_value, count(*) AS events,
           coalesce(sum(ev.value) FILTER (WHERE ev.kind = 'increment'), 0)::bigint
               AS increments,
           coalesce(sum(ev.value) FILTER (
               WHERE ev.kind = 'increment' AND ev.occurred_at > s.snap_at), 0)::bigint
               AS after_snap
    FROM ev
    LEFT JOIN snaps s USING (unit, indicator, day, hour)
    GROUP BY ev.unit, ev.indicator, ev.day, ev.hour, s.snap_value, s.snap_at
), segments AS (
    -- a segment: an hour with a snapshot and the hours after it without one
    SELECT h.*,
           count(h.snap_value) OVER (PARTITION BY h.unit, h.indicator ORDER BY h.day, h.hour)
               AS seg
    FROM hours h
), ends AS (
    -- the own value at each hour's end
    SELECT s.unit, s.indicator, s.day, s.hour, s.increments, s.events,
           coalesce(p.own_baseline, 0) AS base,
           CASE WHEN s.seg = 0
                THEN coalesce(p.own_baseline, 0) + (sum(s.increments) OVER w)::bigint
                ELSE first_value(s.snap_value + s.after_snap) OVER w
                     + (sum(s.increments) OVER w)::bigint - first_value(s.increments) OVER w
           END AS end_value
    FROM segments s
    LEFT JOIN progress p ON p.campaign_id = $1 AND p.unit = s.unit AND p.indicator = s.indicator
    WINDOW w AS (PARTITION BY s.unit, s.indicator, s.seg ORDER BY s.day, s.hour)
), own AS (
    SELECT c.id AS campaign_id, o.unit, o.indicator, o.day, o.hour, o.increments, o.events,
           o.end_value - coalesce(
               lag(o.end_value) OVER (PARTITION BY o.unit, o.indicator ORDER BY o.day, o.hour),
               o.base
           ) AS change,
           u.ancestors || u.code AS lineage
    FROM ends o
    JOIN c ON true
    JOIN unit_anchors a ON a.tree_at = {TREE_AT} AND a.unit = o.unit
    JOIN units u ON u.code = a.anchor
), {spread_by_day("own")}
INSERT INTO subtree_days (campaign_id, unit, indicator, day, change, increments, events, hours)
SELECT campaign_id, unit, indicator, day, change, increments, events, hours
FROM spread
-- written day by day, each day's indicators in turn, as the live apply adds a day's rows
-- on that day: a leaderboard reads one indicator's week of rows, which in the groups'
-- own order lay on nearly every page of the table (28,000 of 29,000 on the 10 M
-- dataset, against 1,400 written in this order; docs/capacity.md)
ORDER BY 4, 3, 2
""",
)


async def apply_days(conn: Connection) -> None:
    """Add the applied batch's changes to the day rollups (inside `apply`'s transaction)."""
    await conn.execute(APPLY_DAY_CHANGES)


async def recount_days(conn: Connection, campaign_id: str) -> None:
    """One campaign's day rollups again from its stored events (inside a re-plan)."""
    for statement in RECOUNT_DAY_CHANGES:
        await conn.execute(statement, campaign_id)
