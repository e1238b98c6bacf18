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
- **apply** (`APPLY_DAY_CHANGES`, computed before the rollup of the counters in
  `tiendo.counting.apply` and written after it by `UPSERT_DAY_CHANGES`) splits each
  touched key's own change of this batch over days and hours, in one of two ways:
  - where the key's latest snapshot stayed and the batch comes after all it has stored
    (how increments arrive live), each counted increment changes its own day and hour;
  - where its latest snapshot moved, or the batch reaches back before what it has stored
    (`LATE`: a report dated before a snapshot already applied, a withdrawn citizen's
    winner, a new latest snapshot dated before stored reports), the key's events of the
    batch are walked (`walked`) in the key's order, tracking `d`, the key's own value
    with the batch less its value before it. An increment adds its value to `d`, a
    withdrawn winner takes its value off, a snapshot of the batch adds its value less
    the value just before it with the batch (one look-up: the snapshot before it and the
    increments since); the first stored snapshot after any of them (a late key's only)
    sets `d` back to nothing, since both histories take its value there. Each hour's
    change is `d` at its end less `d` at the end of the hour before (`walk_changes`).
    What it reads is the batch and a look-up or two per event (`events_snapshots`,
    aggregator migration 017), however long the key's history.

  Exact for every day and hour, in any order of arrival; the days of a key add up to its
  live value. What it costs grows with the history a batch lands on: on the benchmark's
  mix, whose reports are spread at random over 20 days (nearly every batch reaches back
  on most keys with snapshots), the apply about an eighth less into an empty table and
  about a tenth to a fifth less onto 480,000 stored events (`python -m bench.apply_mix
  --stored`); in time order, nothing measurable (docs/capacity.md).
  `tests/counting/test_day_rollups_out_of_order.py` holds it to the recount in shuffled
  and reversed orders, and the `as_of` property tests draw shuffled arrivals.

`tests/boards/test_day_rollups.py` holds both forms equal to the history at every day's end
and, on the first levels, every hour's, and to each other.

`as_of` reads them too (`tiendo.counting.as_of_days`): a past moment from the rollups and
at most one day of events per key.
"""

from tiendo.counting import reach
from tiendo.counting.batch import TREE_AT
from tiendo.counting.hours import hours_added, hours_of
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

# The order the apply's day changes are grouped in (`spread_by_day`) and locked in
# (`UPSERT_DAY_CHANGES`), so that the upsert's sort finds them in order. The unit first:
# the campaign, the same on nearly every row, made each comparison of the sort compare it
# in full before the unit; unit first, the sort's abbreviated keys decide most of them
# (`APPLY_DAY_CHANGES` about a tenth less, the apply 1-4 % more events/s, `python -m
# bench.apply_mix`, 6 December).
DAY_ORDER = "unit, indicator, day, campaign_id"


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
    -- cost the apply's statement a seventh more; grouped unit first, as `DAY_ORDER` says)
    SELECT campaign_id, unit, indicator, day,
           sum(change)::bigint AS change, sum(increments)::bigint AS increments,
           sum(events)::bigint AS events,
           CASE WHEN bool_or(hour IS NOT NULL) THEN {hours_of("change", "hour")} END AS hours
    FROM landed
    GROUP BY {DAY_ORDER}
)"""


# Two days' `hours` added, cell by cell (null where either is: a day rolled up before the
# hours were kept has none until the next recount, and `as_of` then reads its whole day).
ADD_HOURS = (
    "CASE WHEN s.hours IS NULL OR EXCLUDED.hours IS NULL THEN NULL ELSE "
    + hours_added("s.hours", "EXCLUDED.hours")
    + " END"
)

# A key whose batch reaches back before what it has stored (`k` its batch_keys row,
# `first_at` its batch's earliest event, withdrawn winners included): an event at or
# before its stored latest snapshot (an increment the snapshot covers, an older snapshot),
# or a new latest snapshot with stored events at or after the batch's first. Its days
# take what the batch changes in the history (the walk, `walk_changes`), as do those of a
# key whose latest snapshot moved. Every other key's batch comes after all it has stored,
# and its own increments tell each day's change.
LATE = "coalesce(k.first_at <= k.snap_at OR (k.resnapped AND k.first_at <= k.old_last_at), false)"

# The keys whose days take the walk (`walked`): a late key's, and one whose latest snapshot
# moved. Every other key's days take its own counted increments (`incs`' change): each key
# is the one's or the other's, never both, never neither.
WALKED = f"(k.resnapped OR {LATE})"

# apply: computed after `rules.UPDATE_SNAPSHOTS` (`batch_keys.resnapped` is known,
# `batch_keys.old_own` is the value before the batch) into `batch_days`, and written by
# `UPSERT_DAY_CHANGES` after `batch.SPREAD`. It reads only the batch, its keys' own events
# and baselines, none of which the spread changes: computed before it, it is done before
# the transaction takes the ancestors' rows, which every other transaction applying side
# by side (another replica, another part of the round) waits for until it commits.
APPLY_DAY_CHANGES = f"""
WITH incs AS (
    -- every key's counted increments and events of each day; where its latest snapshot
    -- stayed, each counted increment after it changes its day (one the snapshot covers
    -- changes nothing now), as `rules.BATCH_INCREMENTS` counts them; joined on batch_keys'
    -- key, as that is (a CTE of the keys, which the planner cannot see into, made this a
    -- nested loop of every event by every key)
    SELECT a.campaign_id, a.unit, a.indicator, a.day, a.hour,
           coalesce(sum(a.value) FILTER (WHERE {MOVES_OWN_VALUE} AND NOT {WALKED}), 0)::bigint
               AS change,
           coalesce(sum(a.value) FILTER (WHERE a.kind = 'increment'), 0)::bigint AS increments,
           -- a withdrawn subject winner no longer counts on its day
           count(*) FILTER (WHERE NOT a.adjustment) - count(*) FILTER (WHERE a.adjustment)
               AS events,
           min(k.lineage) AS lineage
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    GROUP BY 1, 2, 3, 4, 5
), walked AS MATERIALIZED (
    -- a key whose latest snapshot moved, or whose batch reaches back before what it has
    -- stored (`LATE`): its events of the batch, at their place in the key's order
    -- (`snap`: an increment at a snapshot's very moment is before it, as the snapshot
    -- covers it)
    SELECT a.campaign_id, a.unit, a.indicator, a.occurred_at, a.kind = 'snapshot' AS snap,
           a.event_id, a.value, a.day, a.hour, {LATE} AS late
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE {WALKED}
), walk_steps AS (
    -- What each changes in `d`, the key's own value with the batch less its value before
    -- it. An increment (or a withdrawn winner, minus its value) adds its value. A snapshot
    -- of the batch sets the value with the batch: it adds its value less that value just
    -- before it (its latest snapshot before it, else the baseline, then the increments
    -- counted since, the batch's among them).
    SELECT l.campaign_id, l.unit, l.indicator, l.occurred_at, l.snap, l.event_id,
           l.day, l.hour, false AS meets,
           CASE WHEN l.snap
                THEN l.value - (
                    -- (`counted` summed, not filtered: filtered, the planner read the
                    -- indicator's counted events of the span, every unit's, for one)
                    SELECT coalesce(
                               s.value,
                               (SELECT p.own_baseline FROM progress p
                                WHERE p.campaign_id = l.campaign_id AND p.unit = l.unit
                                  AND p.indicator = l.indicator))
                           + coalesce(sum(e.value) FILTER (WHERE e.counted), 0)
                    FROM events e
                    WHERE e.unit = l.unit AND e.indicator = l.indicator
                      AND e.kind = 'increment'
                      AND e.occurred_at <= l.occurred_at
                      AND e.occurred_at >= coalesce(s.occurred_at, c.starts_at)
                      AND (s.occurred_at IS NULL OR e.occurred_at > s.occurred_at))
                ELSE l.value END AS step
    FROM walked l
    JOIN campaigns c ON c.id = l.campaign_id
    LEFT JOIN LATERAL (
        SELECT e.occurred_at, e.value FROM events e
        WHERE l.snap AND e.unit = l.unit AND e.indicator = l.indicator
          AND e.kind = 'snapshot' AND e.occurred_at >= c.starts_at
          AND e.occurred_at <= l.occurred_at
          AND (e.occurred_at, e.event_id) < (l.occurred_at, l.event_id)
        ORDER BY e.occurred_at DESC, e.event_id DESC
        LIMIT 1
    ) s ON true
    UNION
    -- where the two histories meet again, `d` back to nothing: the first stored snapshot
    -- after each of them (one of the batch's is not in the history before it); only a
    -- late key has stored events after any of its batch's
    SELECT l.campaign_id, l.unit, l.indicator, n.occurred_at, true, n.event_id,
           {local_day("n.occurred_at")}, {local_hour("n.occurred_at")}, true, 0
    FROM walked l
    JOIN campaigns c ON c.id = l.campaign_id
    CROSS JOIN (SELECT ARRAY(SELECT event_id FROM walked WHERE snap) AS ids) t
    CROSS JOIN LATERAL (
        SELECT e.occurred_at, e.event_id FROM events e
        WHERE e.unit = l.unit AND e.indicator = l.indicator AND e.kind = 'snapshot'
          AND e.occurred_at >= l.occurred_at AND e.occurred_at <= c.deadline
          AND (e.occurred_at, true, e.event_id) > (l.occurred_at, l.snap, l.event_id)
          AND e.event_id <> ALL (t.ids)
        ORDER BY e.occurred_at, e.event_id
        LIMIT 1
    ) n
    WHERE l.late
), walk_d AS (
    SELECT x.*,
           count(*) FILTER (WHERE x.meets) OVER (
               PARTITION BY x.campaign_id, x.unit, x.indicator
               ORDER BY x.occurred_at, x.snap, x.event_id) AS met
    FROM walk_steps x
), walk_ends AS (
    -- `d` after each step: the steps since the histories last met (a meeting's own step is
    -- nothing); kept at the last step of each hour. `met` grows with the key's order, so
    -- ordering by it first changes nothing and lets these windows share one sort.
    SELECT campaign_id, unit, indicator, day, hour, met, occurred_at, snap, event_id,
           (sum(step) OVER (PARTITION BY campaign_id, unit, indicator, met
                            ORDER BY occurred_at, snap, event_id))::bigint AS d,
           (lead(day) OVER w, lead(hour) OVER w) IS DISTINCT FROM (day, hour) AS hour_end
    FROM walk_d
    WINDOW w AS (PARTITION BY campaign_id, unit, indicator
                 ORDER BY met, occurred_at, snap, event_id)
), walk_changes AS (
    -- an hour's change with the batch less its change before it: `d` differenced
    SELECT e.campaign_id, e.unit, e.indicator, e.day, e.hour,
           e.d - coalesce(lag(e.d) OVER (PARTITION BY e.campaign_id, e.unit, e.indicator
                                         ORDER BY e.met, e.occurred_at, e.snap, e.event_id),
                          0) AS change
    FROM walk_ends e
    WHERE e.hour_end
), own_hours AS (
    SELECT * FROM incs
    UNION ALL
    SELECT w.campaign_id, w.unit, w.indicator, w.day, w.hour, w.change, 0, 0, k.lineage
    FROM walk_changes w
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE w.change <> 0
), {spread_by_day("own_hours")}
INSERT INTO batch_days (campaign_id, unit, indicator, day, change, increments, events, hours)
SELECT campaign_id, unit, indicator, day, change, increments, events, hours
FROM spread
-- (a day's hours can move while the day does not: a withdrawn citizen's event and the
-- one that replaced it, hours apart)
WHERE change <> 0 OR increments <> 0 OR events <> 0 OR 0 <> ANY (hours)
"""

# apply: the batch's day changes (`APPLY_DAY_CHANGES`) added to the rollups, after
# `batch.SPREAD`, within the apply's transaction.
UPSERT_DAY_CHANGES = f"""
INSERT INTO subtree_days AS s
    (campaign_id, unit, indicator, day, change, increments, events, hours)
SELECT campaign_id, unit, indicator, day, change, increments, events, hours
FROM batch_days
-- replicas lock rows in one order: no deadlock between them
ORDER BY {DAY_ORDER}
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


async def stage_days(conn: Connection) -> None:
    """The applied batch's changes of the day rollups, into `batch_days` (inside `apply`'s
    transaction, before the counters' spread)."""
    await conn.execute(APPLY_DAY_CHANGES)


async def apply_days(conn: Connection) -> None:
    """Add the staged changes (`stage_days`) to the day rollups (after the spread)."""
    await conn.execute(UPSERT_DAY_CHANGES)


async def recount_days(conn: Connection, campaign_id: str) -> None:
    """One campaign's day rollups again from its stored events (inside a re-plan), counted
    as a change of every day (`reach`: a value a reader kept from them is stale)."""
    for statement in RECOUNT_DAY_CHANGES:
        await conn.execute(statement, campaign_id)
    await reach.mark_replanned(conn, campaign_id)
