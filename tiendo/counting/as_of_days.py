"""`as_of` from the day rollups (issue 15): the figures of a past moment from `progress`, the
day rollups `subtree_days` (`tiendo.counting.rollups`) and at most one day of events per
key, instead of the whole history. With D the campaign's local day of the moment T, read
whichever part of D is shorter, before T or after it. Before, a root's value at T is

    progress.value - sum(change of days >= D)            -- its value at the end of D - 1
    + sum over the versions landing in the subtree of their day D part up to T:
        the counted increments of day D up to T, or, for a version with a snapshot on day D
        at or before T, (its latest such snapshot + the increments after it up to T) minus
        its own value at the end of D - 1

and after, the same walk backwards from the day's end:

    progress.value - sum(change of days > D)             -- its value at the end of D
    - sum over the versions landing in the subtree of their day D part after T:
        the counted increments of day D after T, and, for a version with a snapshot on day
        D after T, (its latest such snapshot - its base - the counted increments after its
        base up to that snapshot), its base being its latest snapshot of day D up to T
        where it has one, else its own value at the end of D - 1

Where every root is of the tree's first levels (`rollups.HOURLY_LEVELS`: the country and its
provinces) and the rollups hold the hours of D for them, the part read is that of the
moment's hour H instead of its day, whichever side of the moment is shorter (at most half
an hour): before it, a root's value where the hour starts is `progress.value - sum(change
of days > D) - sum(hours[H + 1:] of D)`, after it the same less hour H too; a version with
a snapshot in that part takes as its base its latest snapshot of D before the part, as
after the moment. (The country at noon on the 10 M dataset: 0.48 s reading the half day,
0.15 s by hours; at any moment 0.13-0.17 s, docs/capacity.md.)

A version's own value at the end of D - 1 is read from the rollups as the value landed on
its unit less its children's; where that unit also receives closed versions' figures
(after a cut-over) the two cannot be told apart, and such a root is read from the history
(the reply marks it `exact = false`; rare: a snapshot on the day read of a unit that
absorbed another). The last report is `progress.last_event_at` when that is not after T,
else the latest of what was read before T (after T, or by hours: of the `RECENT` minutes
before it, then, where probing would be more than `MOST_PROBES` probes, of the rest of day
D up to there), else the latest up to there from the history, for those roots only, probed
backwards version by version.

What it reads (aggregator migration 014 holds the paths): the roots' subtrees by their
lineage (`units_ancestors`; more than `FEW_ROOTS` roots, a level's leaderboard, by joining
every unit's lineage to them), the values at a day's start of the roots and of the
versions with a snapshot in the part read and their children only, and the part of the
day of a large subtree from one index-only range of its indicators
(`events_counted_by_day`), of a small one unit by unit. The events are summed as they are
read, per nearest root (each version counts toward the deepest requested root above it,
and each root then sums the nearest roots under it), so that half a million events become
a few hundred rows at once; a version with a snapshot in the part read is corrected from
its own few events by its index. Its cost follows the length of the part read, at most
half a day: the country and its provinces on `bench.national` at 10 M events (half a
million events a day) read in about 0.25 s at noon, 0.1 s at 23:00, against 0.37 s at
23:00 reading the day up to the moment, and 1.4 s when each event was carried through the
joins (docs/capacity.md).

It answers only where the rollups are kept: on the campaign's current tree (`TREE_AT`,
`unit_anchors`), without versions carried by shares that have counted events (they have no
rollups). Anywhere else (a moment before the campaign's cut-over, a comparison on another
campaign's tree) the reply is empty and the caller reads the history
(`rules.VALUES_AS_OF`): `tiendo.counting.as_of` makes that choice, in one place.

`tiendo check`, which holds the counters against an independent reading of the history,
reads the history (`counting.as_of_history`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tiendo.counting.batch import TREE_AT
from tiendo.counting.rollups import HOURLY_LEVELS
from tiendo.counting.rules import day_start, local_day, local_hour
from tiendo.database import Connection

# Up to this many versions in a subtree, its day of events is read unit by unit.
SMALL_SUBTREE = 500

# Read after the moment, the roots' last reports up to it are looked for in this much
# history before it; a large subtree's root with none there reads the rest of the day up
# to there, and only a root with none there either (or a small one) is probed unit by
# unit.
RECENT = "10 minutes"

# Read after the moment, roots not seen in the last `RECENT` minutes are found by probing
# each of their versions backwards (about 20 µs each) up to this many probes, else by
# reading the rest of the day up to there (about 0.3 µs an event, 0.2 s for the country's
# half a million): a few quiet provinces are probed, a quiet evening's country is read.
MOST_PROBES = 5000

# Up to this many roots, their subtrees are found by their lineages' index; more, by joining
# every unit's lineage to them.
FEW_ROOTS = 64

# Which part of the moment's day is read: the shorter (auto), or one forced (the tests
# hold both equal to the history).
Side = Literal["auto", "before", "after"]


def _range_of(indicators: str, lo: str, hi: str, *, also: str = "true") -> str:
    """The counted events of `indicators` in [lo, hi] (SQL expressions; `also`, a further
    condition), one row each: its unit, indicator, increment (null for a snapshot), time,
    and whether it is a snapshot. Read as one range of `events_counted_by_day` whatever the
    planner thinks of the join with the versions that follows: the unit is given as an
    expression (`|| ''`), which no index of the events holds, so the join can only hash
    the range, never probe each version's events by `events_unit_indicator_time`. Joined by
    the column itself, the planner did probe once a few percent of the table's pages had
    left the visibility map (the inserts since the last vacuum, in any live deployment:
    an index-only scan is then costed with heap visits), taking the country's noon on the
    10 M dataset from 0.3-0.4 to 2.1-2.6 s (tests/counting/test_as_of_days_plan.py).
    Against the other fences there (the country's noon, alternating, medians of 10 rounds,
    on a day the box ran at about two thirds of its speed): just vacuumed, 0.50 s, the
    column 0.47 (the expression costs per event), `OFFSET 0` 0.54, summing by unit
    before the join 0.56; with 8 % of the pages out of the map, 0.53 s, the column 2.48,
    `OFFSET 0` 0.51, summing by unit 0.56."""
    return f"""(
        SELECT e.unit || '' AS unit, e.indicator,
               CASE WHEN e.kind = 'increment' THEN e.value END AS increments,
               e.occurred_at AS last_at, e.kind = 'snapshot' AS snapped
        FROM events e
        WHERE {also} AND e.indicator = ANY ({indicators}) AND e.counted
          AND e.occurred_at >= {lo} AND e.occurred_at <= {hi}
    )"""


# Where the recent minutes before the moment start.
_RECENT_FROM = f"greatest((SELECT at FROM c) - interval '{RECENT}', $4::timestamptz)"

# A large subtree's three readings of a range of the day: the part read (`day_sums`), the
# recent minutes before the moment (`recent`), the rest of the day before those (`earlier`:
# up to a microsecond before they start).
_LARGE = "(SELECT count(*) FROM own_units) > $7::int"
_DAY_READ = _range_of("$3::text[]", "(SELECT lo FROM span)", "(SELECT hi FROM span)", also=_LARGE)
_RECENT_READ = _range_of(
    "$3::text[]", _RECENT_FROM, "(SELECT at FROM c)", also=f"(SELECT recent FROM span) AND {_LARGE}"
)
_EARLIER_READ = _range_of(
    "ARRAY(SELECT DISTINCT indicator FROM missing)",
    "(SELECT day_from FROM c)",
    "(SELECT earlier_to FROM span)",
)

# $1 the roots, $2 the campaign, $3 its indicators, $4 its start, $5 the moment (clamped
# to the deadline here), $6 the moment whose tree is asked (null: the moment's own), $7
# the most versions of a subtree read unit by unit (SMALL_SUBTREE), $8 the side of the
# moment read ('auto', 'before', 'after': `Side`), $9 MOST_PROBES, $10 the most roots
# whose subtrees are found by their lineages' index (FEW_ROOTS).
AS_OF_FROM_DAYS = f"""
WITH c AS (
    SELECT c.*, t.at, t.day,
           greatest({day_start("t.day")}, $4::timestamptz) AS day_from,
           -- (the day's last microsecond: the bounds are inclusive, as the moment is)
           least({day_start("t.day + 1")} - interval '1 microsecond', c.deadline) AS day_to,
           t.hour,
           greatest({day_start("t.day")} + t.hour * interval '1 hour', $4::timestamptz)
               AS hour_from,
           least({day_start("t.day")} + (t.hour + 1) * interval '1 hour',
                 {day_start("t.day + 1")}) - interval '1 microsecond' AS hour_end,
           {TREE_AT} AS m
    FROM campaigns c
    CROSS JOIN LATERAL (SELECT least($5::timestamptz, c.deadline) AS at) a
    CROSS JOIN LATERAL (
        SELECT a.at, {local_day("a.at")} AS day, {local_hour("a.at")} AS hour
    ) t
    WHERE c.id = $2
), hourly AS MATERIALIZED (
    -- the roots' days keep their hours (all of the tree's first levels, and the day read
    -- rolled up since the hours were kept): only the moment's hour is read (asked once:
    -- inlined, each use asked again)
    SELECT NOT EXISTS (SELECT 1 FROM units u
                       WHERE u.code = ANY ($1::text[])
                         AND cardinality(u.ancestors) >= {HOURLY_LEVELS})
           AND NOT EXISTS (SELECT 1 FROM subtree_days d
                           WHERE d.campaign_id = $2 AND d.unit = ANY ($1::text[])
                             AND d.indicator = ANY ($3::text[]) AND d.day = c.day
                             AND d.hours IS NULL) AS hourly
    FROM c
), bounds AS (
    -- the part of the day either side of the moment: the day's, or its hour's
    SELECT h.hourly,
           CASE WHEN h.hourly THEN c.hour_from ELSE c.day_from END AS part_from,
           CASE WHEN h.hourly THEN least(c.hour_end, c.deadline) ELSE c.day_to END AS part_to
    FROM c, hourly h
), side AS (
    -- which part is read: before the moment (from the part's start, where the values at
    -- the end of the day, or hour, before are) or after it (to the part's end), whichever
    -- is shorter
    SELECT CASE $8::text WHEN 'after' THEN true WHEN 'before' THEN false
                ELSE c.at >= b.part_from AND c.at - b.part_from > b.part_to - c.at END AS after
    FROM c, bounds b
), span AS (
    -- the events read, [lo, hi]; the day whose start the roots' values are taken at
    -- (progress less the changes of that day and later) and, by hours, the hour of the
    -- day before it from which its hours' changes are taken off too; the sign of what is
    -- read
    SELECT s.after,
           CASE WHEN s.after THEN greatest(c.at + interval '1 microsecond', b.part_from)
                ELSE b.part_from END AS lo,
           CASE WHEN s.after THEN b.part_to ELSE c.at END AS hi,
           CASE WHEN s.after OR b.hourly THEN c.day + 1 ELSE c.day END AS from_day,
           CASE WHEN NOT b.hourly THEN NULL WHEN s.after THEN c.hour + 1 ELSE c.hour END
               AS from_hour,
           CASE WHEN s.after THEN -1 ELSE 1 END AS sign,
           -- where a root's last report before the moment is probed for, when it is not
           -- live's and not read with the part
           CASE WHEN s.after THEN c.at ELSE b.part_from - interval '1 microsecond' END
               AS probe_to,
           -- whether the last minutes before the moment are read for the roots' last
           -- reports (after it; by hours before it too, where the hour read can be a few
           -- minutes), and where the rest of the day is read up to for those not seen,
           -- where probing them would be too many probes
           s.after OR b.hourly AS recent,
           least({_RECENT_FROM}, CASE WHEN s.after THEN c.at ELSE b.part_from END)
               - interval '1 microsecond' AS earlier_to
    FROM c, side s, bounds b
), usable AS (
    -- the rollups are kept on the campaign's tree, and without versions carried by shares
    SELECT c.m = aggregator_read.tree_moment(coalesce($6, greatest(c.at, $4))) AND NOT EXISTS (
               -- (from the events: the notifier reads `progress` through a view without
               -- the own columns)
               SELECT 1
               FROM units v
               WHERE v.valid_to <= c.m
                 AND NOT EXISTS (SELECT 1 FROM unit_anchors a
                                 WHERE a.tree_at = c.m AND a.unit = v.code)
                 AND EXISTS (SELECT 1 FROM events e
                             WHERE e.unit = v.code AND e.indicator = ANY (c.indicators)
                               AND e.counted AND e.occurred_at >= c.starts_at
                               AND e.occurred_at <= c.deadline)
           ) AS ok
    FROM c
), roots AS (
    SELECT DISTINCT code FROM unnest($1::text[]) AS r (code)
), members AS (
    -- each unit of the campaign's tree under (or equal to) a requested root. A few roots:
    -- the units found by their lineages (`units_ancestors`, migration 014: a commune's is
    -- one unit, not a reading of the whole tree's lineages). Many (a level's leaderboard):
    -- every unit's lineage joined to them, since that test costs a unit's lineage times
    -- the roots wherever the planner applies it as a filter (10,236 communes of the
    -- national tree: 2.9 s of a 3.1 s read, against 0.1 s joined).
    SELECT lineage.code AS root, u.code, lineage.depth
    FROM c
    JOIN units u ON u.valid_from <= c.m AND c.m < coalesce(u.valid_to, 'infinity')
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) WITH ORDINALITY AS lineage (code, depth)
    JOIN roots ON roots.code = lineage.code
    WHERE cardinality($1::text[]) <= $10::int
      AND (u.ancestors && $1::text[] OR u.code = ANY ($1::text[]))
    UNION ALL
    SELECT lineage.code AS root, u.code, lineage.depth
    FROM c
    JOIN units u ON u.valid_from <= c.m AND c.m < coalesce(u.valid_to, 'infinity')
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) WITH ORDINALITY AS lineage (code, depth)
    JOIN roots ON roots.code = lineage.code
    WHERE cardinality($1::text[]) > $10::int
), tree_units AS (
    SELECT DISTINCT code FROM members
), own_units AS (
    -- every version whose figures land on one of them, and where
    SELECT a.unit AS code, a.anchor,
           count(*) OVER (PARTITION BY a.anchor) AS landing
    FROM c JOIN unit_anchors a ON a.tree_at = c.m
    WHERE a.anchor IN (SELECT code FROM tree_units)
), version_roots AS (
    -- each version with the nearest requested root at or above the unit it lands on: the
    -- day's events are summed per nearest root, and each root then sums those under it
    SELECT o.code, o.anchor, o.landing, n.root
    FROM own_units o
    JOIN (SELECT DISTINCT ON (code) code, root FROM members ORDER BY code, depth DESC) n
      ON n.code = o.anchor
), day_sums AS (
    -- the span read, per nearest root and indicator: its increments, its last report,
    -- and the versions with a snapshot in it. A large subtree reads the whole span of its
    -- indicators (index only: `events_counted_by_day`, migration 014) and keeps its
    -- units'; a small one reads each of its units' (`events_unit_indicator_time`), which
    -- the planner, blind to the subtree's size, would not choose between. (Summed as read,
    -- per nearest root: the country's day at 10 M events is half a million events, and
    -- each one carried through further joins cost about three microseconds.)
    SELECT v.root, e.indicator, sum(e.increments) AS increments, max(e.last_at) AS last_at,
           array_agg(e.unit) FILTER (WHERE e.snapped) AS snapped
    FROM {_DAY_READ} e
    JOIN version_roots v ON v.code = e.unit
    GROUP BY v.root, e.indicator
    UNION ALL
    SELECT v.root, e.indicator, sum(e.increments), max(e.last_at),
           array_agg(v.code) FILTER (WHERE e.snapped)
    FROM version_roots v
    CROSS JOIN LATERAL (
        -- (grouped here, so that the planner keeps it a probe per unit, not a join)
        SELECT e.indicator,
               sum(e.value) FILTER (WHERE e.kind = 'increment') AS increments,
               max(e.occurred_at) AS last_at,
               bool_or(e.kind = 'snapshot') AS snapped
        FROM events e
        WHERE e.unit = v.code AND e.indicator = ANY ($3::text[]) AND e.counted
          AND e.occurred_at >= (SELECT lo FROM span)
          AND e.occurred_at <= (SELECT hi FROM span)
        GROUP BY e.indicator
    ) e
    WHERE (SELECT count(*) FROM own_units) <= $7::int
    GROUP BY v.root, e.indicator
), day_snaps AS (
    -- a version with a snapshot in the span: its latest there; its value where the span
    -- starts when a snapshot of the day before the span set it (after the moment: the
    -- latest up to the moment), else its value at the day's start is read; and the
    -- increments between the two, which the latest replaces (its own few events, by its
    -- index)
    SELECT k.unit, k.indicator, s.value, b.value AS base,
           coalesce((
               SELECT sum(a.value) FROM events a
               WHERE a.unit = k.unit AND a.indicator = k.indicator AND a.counted
                 AND a.kind = 'increment'
                 AND a.occurred_at >= coalesce(b.occurred_at + interval '1 microsecond',
                                               (SELECT day_from FROM c))
                 AND a.occurred_at <= s.occurred_at
           ), 0) AS replaced
    FROM (
        SELECT DISTINCT k.unit, d.indicator
        FROM day_sums d CROSS JOIN LATERAL unnest(d.snapped) AS k (unit)
    ) k
    CROSS JOIN LATERAL (
        SELECT e.occurred_at, e.value
        FROM events e
        WHERE e.unit = k.unit AND e.indicator = k.indicator AND e.counted
          AND e.kind = 'snapshot'
          AND e.occurred_at >= (SELECT lo FROM span) AND e.occurred_at <= (SELECT hi FROM span)
        ORDER BY e.occurred_at DESC, e.event_id DESC
        LIMIT 1
    ) s
    LEFT JOIN LATERAL (
        SELECT e.occurred_at, e.value
        FROM events e
        WHERE (SELECT lo FROM span) > (SELECT day_from FROM c)
          AND e.unit = k.unit AND e.indicator = k.indicator AND e.counted
          AND e.kind = 'snapshot'
          AND e.occurred_at >= (SELECT day_from FROM c) AND e.occurred_at < (SELECT lo FROM span)
        ORDER BY e.occurred_at DESC, e.event_id DESC
        LIMIT 1
    ) b ON true
), needed AS (
    -- the subtrees whose value at a day's start is read: the roots' (at the span's
    -- day), and of each version with a snapshot in the span and no value where it
    -- starts, its own and its children's (its own value then) at the moment's day, for
    -- that indicator; not the whole subtree's
    SELECT r.code AS unit, i.indicator, (SELECT from_day FROM span) AS from_day,
           (SELECT from_hour FROM span) AS from_hour
    FROM roots r CROSS JOIN unnest($3::text[]) AS i (indicator)
    UNION
    SELECT unit, indicator, (SELECT day FROM c), NULL FROM day_snaps WHERE base IS NULL
    UNION
    SELECT u.code, s.indicator, (SELECT day FROM c), NULL
    FROM day_snaps s
    JOIN units u ON u.parent_code = s.unit
    JOIN tree_units t ON t.code = u.code
    WHERE s.base IS NULL
), ends AS (
    -- each needed subtree's value at the start of its day: live less that day's and
    -- later ones (a probe of its rollups from that day on: a join left the day out of
    -- the index's range and read every day of the campaign)
    SELECT p.unit, p.indicator, n.from_day, u.parent_code AS parent, p.last_event_at,
           p.value - coalesce((
               SELECT sum(d.change) FROM subtree_days d
               WHERE d.campaign_id = $2 AND d.unit = p.unit AND d.indicator = p.indicator
                 AND d.day >= n.from_day
           ), 0) - coalesce((
               -- by hours: those of the moment's day from `from_hour` on
               SELECT sum(h) FROM subtree_days d, unnest(d.hours[n.from_hour + 1:]) AS h
               WHERE n.from_hour IS NOT NULL AND d.campaign_id = $2 AND d.unit = p.unit
                 AND d.indicator = p.indicator AND d.day = n.from_day - 1
           ), 0) AS value
    FROM needed n
    JOIN progress p ON p.campaign_id = $2 AND p.unit = n.unit AND p.indicator = n.indicator
    JOIN units u ON u.code = p.unit
), day_ends AS (
    SELECT * FROM ends WHERE from_day = (SELECT day FROM c)
), child_ends AS (
    SELECT parent, indicator, sum(value) AS value FROM day_ends GROUP BY 1, 2
), parts AS (
    -- each nearest root's change over the span: its increments, and for each version
    -- with a snapshot in it, the snapshot in place of its own value where the span starts
    -- (a snapshot's, or its subtree's at the day's start less its children's) and of the
    -- increments it replaces; after the moment, subtracted
    SELECT d.root, d.indicator, (SELECT sign FROM span) * coalesce(d.increments, 0) AS change,
           d.last_at, true AS exact
    FROM day_sums d
    UNION ALL
    SELECT v.root, s.indicator,
           (SELECT sign FROM span) * (
               s.value - coalesce(s.base, coalesce(ue.value, 0) - coalesce(ce.value, 0))
               - s.replaced),
           NULL,
           -- a version sharing its unit with others has no value of its own in the
           -- rollups: not exact
           s.base IS NOT NULL OR (v.anchor = s.unit AND v.landing = 1)
    FROM day_snaps s
    JOIN version_roots v ON v.code = s.unit
    LEFT JOIN day_ends ue ON ue.unit = s.unit AND ue.indicator = s.indicator
    LEFT JOIN child_ends ce ON ce.parent = s.unit AND ce.indicator = s.indicator
), root_parts AS (
    -- the parts summed up to each root (the few nearest roots probe the members)
    SELECT mm.root, pt.indicator, sum(pt.change) AS change, bool_and(pt.exact) AS exact,
           max(pt.last_at) AS last_at
    FROM parts pt JOIN members mm ON mm.code = pt.root
    GROUP BY 1, 2
), recent AS (
    -- read after the moment: each nearest root's last report up to it, from the last
    -- minutes before it (one index range; a root with none there is probed)
    SELECT v.root, e.indicator, max(e.last_at) AS last_at
    FROM {_RECENT_READ} e
    JOIN version_roots v ON v.code = e.unit
    GROUP BY v.root, e.indicator
    UNION ALL
    -- (a small subtree: joined directly, the planner choosing between probing its few
    -- versions and reading the minutes' range; both cheap at its size)
    SELECT v.root, e.indicator, max(e.occurred_at)
    FROM events e
    JOIN version_roots v ON v.code = e.unit
    WHERE (SELECT recent FROM span) AND (SELECT count(*) FROM own_units) <= $7::int
      AND e.indicator = ANY ($3::text[]) AND e.counted
      AND e.occurred_at >= {_RECENT_FROM} AND e.occurred_at <= (SELECT at FROM c)
    GROUP BY v.root, e.indicator
), root_recent AS (
    SELECT mm.root, r.indicator, max(r.last_at) AS last_at
    FROM recent r JOIN members mm ON mm.code = r.root
    GROUP BY 1, 2
), unseen AS (
    -- roots with reports after the moment but none in the minutes before it (after it),
    -- or none in the hour read up to it (by hours, before it)
    SELECT x.unit AS root, x.indicator
    FROM ends x
    WHERE (SELECT lo FROM span) > (SELECT day_from FROM c)
      AND x.from_day = (SELECT from_day FROM span) AND x.unit IN (SELECT code FROM roots)
      AND x.last_event_at > (SELECT at FROM c)
      AND NOT EXISTS (SELECT 1 FROM root_recent rr
                      WHERE rr.root = x.unit AND rr.indicator = x.indicator)
      AND NOT EXISTS (SELECT 1 FROM root_parts rp
                      WHERE NOT (SELECT after FROM span) AND rp.last_at IS NOT NULL
                        AND rp.root = x.unit AND rp.indicator = x.indicator)
), missing AS (
    -- those, when probing their versions one by one would be more than MOST_PROBES
    -- probes (a quiet evening: the country's and its provinces' were 1.7 s)
    SELECT * FROM unseen
    WHERE (SELECT count(*) FROM unseen n
           JOIN members m2 ON m2.root = n.root JOIN own_units o ON o.anchor = m2.code)
          > $9::int
), earlier AS (
    -- for those, the rest of the day up to there, one index range: never more than
    -- reading the day up to the moment would
    SELECT v.root, e.indicator, max(e.last_at) AS last_at
    FROM {_EARLIER_READ} e
    JOIN version_roots v ON v.code = e.unit
    GROUP BY v.root, e.indicator
), root_earlier AS (
    SELECT mm.root, x.indicator, max(x.last_at) AS last_at
    FROM earlier x JOIN members mm ON mm.code = x.root
    WHERE (mm.root, x.indicator) IN (SELECT root, indicator FROM missing)
    GROUP BY 1, 2
), figures AS (
    -- (a unit without a progress row has had nothing land in its subtree: 0)
    SELECT m.root, i.indicator,
           (coalesce(x.value, 0) + coalesce(rp.change, 0))::bigint AS value,
           coalesce(rp.exact, true) AS exact,
           x.last_event_at AS live_last,
           CASE WHEN (SELECT after FROM span) THEN coalesce(rr.last_at, re.last_at)
                ELSE coalesce(greatest(rp.last_at, rr.last_at), re.last_at) END AS day_last
    FROM (SELECT DISTINCT root FROM members) m
    CROSS JOIN unnest($3::text[]) AS i (indicator)
    LEFT JOIN ends x
           ON x.unit = m.root AND x.indicator = i.indicator
          AND x.from_day = (SELECT from_day FROM span)
    LEFT JOIN root_parts rp ON rp.root = m.root AND rp.indicator = i.indicator
    LEFT JOIN root_recent rr ON rr.root = m.root AND rr.indicator = i.indicator
    LEFT JOIN root_earlier re ON re.root = m.root AND re.indicator = i.indicator
), probed AS (
    -- a root whose last report came after the moment and is not found with what was
    -- read (silent all the day before the moment; a small subtree's read after it, in
    -- the last minutes before it): the history up to there, for those roots only (each
    -- version's latest, backwards along its index)
    SELECT f.root, f.indicator, max(l.occurred_at) AS last_at
    FROM figures f
    JOIN members m2 ON m2.root = f.root
    JOIN own_units o ON o.anchor = m2.code
    CROSS JOIN LATERAL (
        SELECT e.occurred_at
        FROM events e
        WHERE e.unit = o.code AND e.indicator = f.indicator AND e.counted
          AND e.occurred_at >= $4::timestamptz AND e.occurred_at <= (SELECT probe_to FROM span)
        ORDER BY e.occurred_at DESC
        LIMIT 1
    ) l
    WHERE f.live_last > (SELECT at FROM c) AND f.day_last IS NULL
    GROUP BY f.root, f.indicator
)
SELECT f.root, f.indicator, f.value, f.exact,
       CASE WHEN f.live_last <= (SELECT at FROM c) THEN f.live_last
            ELSE coalesce(f.day_last, b.last_at) END AS last_event_at
FROM figures f
LEFT JOIN probed b USING (root, indicator)
WHERE (SELECT ok FROM usable)
UNION ALL
-- the rollups cannot answer: one row without a root says so
SELECT NULL, NULL, NULL, false, NULL FROM usable WHERE NOT ok
"""


@dataclass(frozen=True, slots=True)
class Reading:
    """What the rollups answered: (indicator, root) → (value, last event), and the roots
    they could not read exactly (to be read from the history)."""

    figures: dict[tuple[str, str], tuple[int, datetime | None]]
    inexact: frozenset[str]


PLANNER_SETTINGS = (
    "SELECT current_setting('jit') AS jit, current_setting('enable_sort') AS enable_sort"
)
RESTORE_PLANNER_SETTINGS = "SELECT set_config('jit', $1, true), set_config('enable_sort', $2, true)"


async def read(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
    *,
    tree_at: datetime | None = None,
    small_subtree: int = SMALL_SUBTREE,
    side: Side = "auto",
    most_probes: int = MOST_PROBES,
    few_roots: int = FEW_ROOTS,
) -> Reading | None:
    """`tiendo.counting.as_of` from the rollups and the moment's day of events; `at` at
    most the deadline. None: the rollups cannot answer (the tree of the moment, or of
    `tree_at`, is not the campaign's, or versions carried by shares have counted events;
    or nothing to read)."""
    # inside a caller's transaction this is a savepoint, whose release keeps a SET LOCAL
    # to the caller's end: the settings are put back as they were
    outer = conn.is_in_transaction()
    async with conn.transaction():
        before = await conn.fetchrow(PLANNER_SETTINGS) if outer else None
        # The planner's estimate of this plan passes the JIT threshold; compiling it took
        # 0.9 s of a 1 s read of one commune. (LOCAL: this read's transaction, or its
        # savepoint in the caller's, at whose end `before` is put back.)
        # Sorting is off: the planner, blind to the size of the day it reads (a bound
        # computed in the statement), sorted the country's half a million events to group
        # them into 500 (0.2 s of 0.7 at 10 M events); a hash groups them in one pass, in
        # the default memory. What only a sort can do (DISTINCT ON, a window) still sorts.
        await conn.execute("SET LOCAL jit = off; SET LOCAL enable_sort = off")
        rows = await conn.fetch(
            AS_OF_FROM_DAYS,
            list(roots),
            campaign_id,
            list(indicators),
            starts_at,
            at,
            tree_at,
            small_subtree,
            side,
            most_probes,
            few_roots,
        )
        if before is not None:
            await conn.execute(RESTORE_PLANNER_SETTINGS, before["jit"], before["enable_sort"])
    if not rows or any(r["root"] is None for r in rows):
        return None  # (no rows: an unknown campaign, or no root on its tree)
    return Reading(
        {(r["indicator"], r["root"]): (r["value"], r["last_event_at"]) for r in rows},
        frozenset(r["root"] for r in rows if not r["exact"]),
    )
