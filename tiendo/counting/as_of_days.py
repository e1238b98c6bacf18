"""`as_of` from the day rollups (issue 15): the figures of a past moment from `progress`, the
day rollups `subtree_days` (`tiendo.counting.rollups`) and at most one day of events per
key, instead of the whole history. With D the campaign's local day of the moment T, a
root's value at T is

    progress.value - sum(change of days >= D)            -- its value at the end of D - 1
    + sum over the versions landing in the subtree of their day D part up to T:
        the counted increments of day D up to T, or, for a version with a snapshot on day D
        at or before T, (its latest such snapshot + the increments after it up to T) minus
        its own value at the end of D - 1

A version's own value at the end of D - 1 is read from the rollups as the value landed on
its unit less its children's; where that unit also receives closed versions' figures
(after a cut-over) the two cannot be told apart, and such a root is read from the history
(the reply marks it `exact = false`; rare: a snapshot on the day read of a unit that
absorbed another). The last report is `progress.last_event_at` when that is not after T,
else the latest of day D up to T, else (a subtree silent since before D) the latest
before D from the history, for those roots only.

What it reads (aggregator migration 014 holds the paths): the roots' subtrees by their
lineage (`units_ancestors`), the values at the day's start of the roots and of the units
with a snapshot that day and their children only, the day of events of a large subtree
from one index-only range of its indicators (`events_counted_by_day`) and of a small one
unit by unit. On `bench.national` (1,000,000 events) one indicator of a commune reads in
about 4 ms, of a province and its children 8 ms, of the country and its provinces 100
ms, nearly all of it the per-unit work over the 11,000 units (docs/capacity.md).

It answers only where the rollups are kept: on the campaign's current tree (`TREE_AT`,
`unit_anchors`), without versions carried by shares that have counted events (they have no
rollups). Anywhere else (a moment before the campaign's cut-over, a comparison on another
campaign's tree) the reply is empty and the caller reads the history
(`rules.VALUES_AS_OF`): `tiendo.counting.as_of` makes that choice, in one place.

It inherits the rollups' two inexact cases (`tiendo.counting.rollups`: snapshots arriving
out of order leave some past days off by a late report's change until the next re-plan;
docs/semantics.md). `tiendo check`, which holds the counters against an independent
reading of the history, reads the history (`counting.as_of_history`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tiendo.counting.batch import TREE_AT
from tiendo.database import Connection

# Up to this many versions in a subtree, its day of events is read unit by unit.
SMALL_SUBTREE = 500

# $1 the roots, $2 the campaign, $3 its indicators, $4 its start, $5 the moment (at most
# its deadline), $6 the moment whose tree is asked (null: the moment's own).
AS_OF_FROM_DAYS = f"""
WITH c AS (
    SELECT c.*, (($5::timestamptz AT TIME ZONE c.timezone)::date) AS day,
           greatest(
               (($5::timestamptz AT TIME ZONE c.timezone)::date::timestamp
                AT TIME ZONE c.timezone),
               $4::timestamptz) AS day_from,
           {TREE_AT} AS m
    FROM campaigns c WHERE c.id = $2
), usable AS (
    -- the rollups are kept on the campaign's tree, and without versions carried by shares
    SELECT c.m = aggregator_read.tree_moment(coalesce($6, greatest($5, $4))) AND NOT EXISTS (
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
    -- each unit of the campaign's tree under (or equal to) a requested root
    -- (found through `units_ancestors`, migration 014: a commune's is one unit, not a
    -- reading of the whole tree's lineages)
    SELECT lineage.code AS root, u.code
    FROM c
    JOIN units u ON u.valid_from <= c.m AND c.m < coalesce(u.valid_to, 'infinity')
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    JOIN roots ON roots.code = lineage.code
    WHERE u.ancestors && $1::text[] OR u.code = ANY ($1::text[])
), tree_units AS (
    SELECT DISTINCT code FROM members
), own_units AS (
    -- every version whose figures land on one of them, and where
    SELECT a.unit AS code, a.anchor,
           count(*) OVER (PARTITION BY a.anchor) AS landing
    FROM c JOIN unit_anchors a ON a.tree_at = c.m
    WHERE a.anchor IN (SELECT code FROM tree_units)
), day_events AS (
    -- the one day of events: the moment's day up to the moment. A large subtree reads the
    -- whole day of its indicators (index only: `events_counted_by_day`, migration 014) and
    -- keeps its units'; a small one reads each of its units' (`events_unit_indicator_time`),
    -- which the planner, blind to the subtree's size, would not choose between.
    SELECT e.unit, e.indicator, e.kind, e.value, e.occurred_at, e.event_id
    FROM events e
    WHERE (SELECT count(*) FROM own_units) > {SMALL_SUBTREE}
      AND e.unit IN (SELECT code FROM own_units)
      AND e.indicator = ANY ($3::text[]) AND e.counted
      AND e.occurred_at >= (SELECT day_from FROM c) AND e.occurred_at <= $5
    UNION ALL
    SELECT e.unit, e.indicator, e.kind, e.value, e.occurred_at, e.event_id
    FROM own_units o
    CROSS JOIN LATERAL (
        SELECT e.* FROM events e
        WHERE e.unit = o.code AND e.indicator = ANY ($3::text[]) AND e.counted
          AND e.occurred_at >= (SELECT day_from FROM c) AND e.occurred_at <= $5
    ) e
    WHERE (SELECT count(*) FROM own_units) <= {SMALL_SUBTREE}
), day_snaps AS (
    SELECT DISTINCT ON (e.unit, e.indicator) e.unit, e.indicator, e.occurred_at, e.value
    FROM day_events e
    WHERE e.kind = 'snapshot'
    ORDER BY e.unit, e.indicator, e.occurred_at DESC, e.event_id DESC
), needed AS (
    -- the units whose value at the day's start is read: the roots, and each unit with a
    -- snapshot that day with its children (its own value then); not the whole subtree
    SELECT code FROM roots
    UNION
    SELECT unit FROM day_snaps
    UNION
    SELECT u.code
    FROM units u JOIN tree_units t ON t.code = u.code
    WHERE u.parent_code IN (SELECT unit FROM day_snaps)
), ends AS (
    -- each needed subtree's value at the end of the day before: live less that day's and
    -- later ones
    SELECT p.unit, p.indicator, p.parent, p.last_event_at,
           p.value - coalesce(sum(d.change), 0) AS value
    FROM (
        SELECT p.unit, p.indicator, p.value, p.last_event_at, u.parent_code AS parent
        FROM progress p
        JOIN needed n ON n.code = p.unit
        JOIN units u ON u.code = p.unit
        WHERE p.campaign_id = $2 AND p.indicator = ANY ($3::text[])
    ) p
    LEFT JOIN subtree_days d
           ON d.campaign_id = $2 AND d.unit = p.unit AND d.indicator = p.indicator
          AND d.day >= (SELECT day FROM c)
    GROUP BY p.unit, p.indicator, p.parent, p.value, p.last_event_at
), child_ends AS (
    SELECT parent, indicator, sum(value) AS value FROM ends GROUP BY 1, 2
), parts AS (
    -- each version's change over the day up to the moment, on the unit it lands on
    SELECT o.anchor, e.indicator, max(e.occurred_at) AS last_at,
           -- a snapshot that day of a version sharing its unit with others: not exact
           bool_and(s.unit IS NULL OR (o.anchor = e.unit AND o.landing = 1)) AS exact,
           CASE WHEN s.unit IS NULL THEN 0
                -- a snapshot that day: its value and what follows, less the own value at
                -- the day's start (the unit's subtree less its children's)
                ELSE s.value - (coalesce(min(ue.value), 0) - coalesce(min(ce.value), 0))
           END
           + coalesce(sum(e.value) FILTER (
               WHERE e.kind = 'increment' AND (s.unit IS NULL OR e.occurred_at > s.occurred_at)
           ), 0) AS change
    FROM day_events e
    JOIN own_units o ON o.code = e.unit
    LEFT JOIN day_snaps s USING (unit, indicator)
    LEFT JOIN ends ue ON ue.unit = e.unit AND ue.indicator = e.indicator
    LEFT JOIN child_ends ce ON ce.parent = e.unit AND ce.indicator = e.indicator
    GROUP BY o.anchor, e.unit, e.indicator, s.unit, s.value
), root_parts AS (
    -- the day's parts summed up to each root (the few parts probe the many members)
    SELECT mm.root, pt.indicator, sum(pt.change) AS change, bool_and(pt.exact) AS exact,
           max(pt.last_at) AS last_at
    FROM parts pt JOIN members mm ON mm.code = pt.anchor
    GROUP BY 1, 2
), figures AS (
    -- (a unit without a progress row has had nothing land in its subtree: 0)
    SELECT m.root, i.indicator,
           (coalesce(x.value, 0) + coalesce(rp.change, 0))::bigint AS value,
           coalesce(rp.exact, true) AS exact,
           x.last_event_at AS live_last, rp.last_at AS day_last
    FROM (SELECT DISTINCT root FROM members) m
    CROSS JOIN unnest($3::text[]) AS i (indicator)
    LEFT JOIN ends x ON x.unit = m.root AND x.indicator = i.indicator
    LEFT JOIN root_parts rp ON rp.root = m.root AND rp.indicator = i.indicator
), before_day AS (
    -- a root silent all that day whose last report came after the moment: the history
    -- before the day (rare for a large subtree), read for those roots only
    -- (each version's latest, backwards along its index)
    SELECT f.root, f.indicator, max(l.occurred_at) AS last_at
    FROM figures f
    JOIN members m2 ON m2.root = f.root
    JOIN own_units o ON o.anchor = m2.code
    CROSS JOIN LATERAL (
        SELECT e.occurred_at
        FROM events e
        WHERE e.unit = o.code AND e.indicator = f.indicator AND e.counted
          AND e.occurred_at >= $4::timestamptz AND e.occurred_at < (SELECT day_from FROM c)
        ORDER BY e.occurred_at DESC
        LIMIT 1
    ) l
    WHERE f.live_last > $5::timestamptz AND f.day_last IS NULL
    GROUP BY f.root, f.indicator
)
SELECT f.root, f.indicator, f.value, f.exact,
       CASE WHEN f.live_last <= $5::timestamptz THEN f.live_last
            ELSE coalesce(f.day_last, b.last_at) END AS last_event_at
FROM figures f
LEFT JOIN before_day b USING (root, indicator)
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


async def read(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
    *,
    tree_at: datetime | None = None,
) -> Reading | None:
    """`tiendo.counting.as_of` from the rollups and the moment's day of events; `at` at
    most the deadline. None: the rollups cannot answer (the tree of the moment, or of
    `tree_at`, is not the campaign's, or versions carried by shares have counted events;
    or nothing to read)."""
    async with conn.transaction():
        # The planner's estimate of this plan passes the JIT threshold; compiling it took
        # 0.9 s of a 1 s read of one commune. (LOCAL: the caller's transaction, if any.)
        # The country's day at 10 M events is half a million events, sorted three times:
        # with the default 4 MB each sort spilled to disk (external merges of 30-43 MB, a
        # third of a 1.7 s read). A briefing read, not one per refresh: the memory is rare.
        await conn.execute("SET LOCAL jit = off; SET LOCAL work_mem = '96MB'")
        rows = await conn.fetch(
            AS_OF_FROM_DAYS, list(roots), campaign_id, list(indicators), starts_at, at, tree_at
        )
    if not rows or any(r["root"] is None for r in rows):
        return None  # (no rows: an unknown campaign, or no root on its tree)
    return Reading(
        {(r["indicator"], r["root"]): (r["value"], r["last_event_at"]) for r in rows},
        frozenset(r["root"] for r in rows if not r["exact"]),
    )
