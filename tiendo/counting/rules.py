"""The counting rules in SQL, each rule in its three forms side by side: **apply** (a batch
into the live counters), **recount** (the counters again from the stored events) and
**as_of** (a moment of the history). The semantics are stated once, in the docstring of
`tiendo.counting`; the fragments below are what the forms share, so they cannot drift.

Aliases: `e` an event, `c` its campaign, `p` a progress row. Parameters of the recount:
$1 the campaign (null: all), $2 the campaigns left out (unusable). Of `as_of`: $1 the
roots, $2 the campaign, $3 its indicators, $4 its start, $5 the moment (≤ its deadline).
"""

# -- rule 1: which events count for a campaign -------------------------------------------
# The indicator is the campaign's and the event happened inside its window.
IN_CAMPAIGN = (
    "e.indicator = ANY (c.indicators) AND e.occurred_at >= c.starts_at "
    "AND e.occurred_at <= c.deadline"
)
AS_OF_IN_WINDOW = "e.indicator = ANY ($3::text[]) AND e.occurred_at >= $4 AND e.occurred_at <= $5"
RECOUNT_SCOPE = "($1::text IS NULL OR {col} = $1) AND {col} <> ALL ($2::text[])"


def local_day(at: str) -> str:
    """A campaign's (`c`) local day of the moment `at` (an SQL expression): the bucket of
    the day rollups (`tiendo.counting.rollups`)."""
    return f"({at} AT TIME ZONE c.timezone)::date"


def day_start(day: str) -> str:
    """The moment a campaign's local `day` starts (the bounds of `as_of`'s day read too)."""
    return f"(({day})::timestamp AT TIME ZONE c.timezone)"


def local_hour(at: str) -> str:
    """The hour of its local day the moment `at` falls in, from 0: whole hours elapsed
    since the day started, not the clock's hour, so that a day of a change of clocks (23
    or 25 hours) has no hour twice and none missing. The bucket of the day rollups' hours
    (`tiendo.counting.rollups`); `as_of_days` reads the hour's events from
    `day_start + hour` (never before the day's start: a midnight that a change of clocks
    makes ambiguous)."""
    elapsed = f"date_part('epoch', {at} - {day_start(local_day(at))})"
    return f"greatest(floor({elapsed} / 3600), 0)::int"


LOCAL_DAY = local_day("e.occurred_at")
LOCAL_HOUR = local_hour("e.occurred_at")

# apply: each new event once per campaign it counts for; a dethroned subject winner
# (rule 2) is withdrawn as an adjustment of minus its value. $1: campaigns left out.
SELECT_APPLIED = f"""
INSERT INTO batch_applied
SELECT c.id, e.unit, e.indicator, e.kind, e.value, e.occurred_at, e.event_id,
       {LOCAL_DAY}, false, {LOCAL_HOUR}
FROM batch_new e
JOIN campaigns c ON {IN_CAMPAIGN}
WHERE e.counted AND c.id <> ALL ($1::text[])
UNION ALL
SELECT c.id, e.unit, e.indicator, e.kind, -e.value, e.occurred_at, e.event_id,
       {LOCAL_DAY}, true, {LOCAL_HOUR}
FROM events e
JOIN campaigns c ON {IN_CAMPAIGN}
-- each withdrawn winner by its primary key (see MARK_SUBJECT_DUPLICATES)
WHERE e.event_id = ANY (ARRAY(SELECT event_id FROM batch_dethroned))
  AND c.id <> ALL ($1::text[])
"""

# -- rule 2: a citizen (subject) counts once, at its earliest event ----------------------
# Earliest by (occurred_at, event_id); the others are stored with `counted = false`, which
# every form of rules 3 and 4 reads.
_EARLIEST_BY = ("occurred_at", "event_id")
EARLIEST_FIRST = ", ".join(_EARLIEST_BY)


def earlier(a: str, b: str) -> str:
    """SQL: the event aliased `a` comes before `b`'s in rule 2's order (EARLIEST_FIRST)."""

    def row(alias: str) -> str:
        return "(" + ", ".join(f"{alias}.{column}" for column in _EARLIEST_BY) + ")"

    return f"{row(a)} < {row(b)}"


def counts_once(e: str) -> str:
    """SQL: the event aliased `e` is one rule 2 holds to once per citizen: an increment
    naming its subject (snapshots and anonymous increments always count)."""
    return f"{e}.subject IS NOT NULL AND {e}.kind = 'increment'"


# apply: the subjects of the batch, the first of each marked
STAGE_SUBJECTS = f"""
INSERT INTO batch_subjects
SELECT indicator, subject, event_id, occurred_at, unit,
       row_number() OVER (PARTITION BY indicator, subject ORDER BY {EARLIEST_FIRST}) = 1
FROM batch_new n
WHERE {counts_once("n")}
"""

# Replicas applying different partitions may see the same citizen: serialise per subject
# (in a fixed order, so two transactions cannot deadlock on these locks).
LOCK_SUBJECTS = """
SELECT pg_advisory_xact_lock(hashtextextended(indicator || '/' || subject, 7301119))
FROM (SELECT DISTINCT indicator, subject FROM batch_subjects ORDER BY 1, 2) s
"""

# A subject's stored winner, looked up by its primary key for each of the batch's (`b`):
# a join let the planner, blind to the size of the temporary batch, hash every stored
# subject instead (all of them read for each batch: 13 ms of a 1,000-event batch's 80 at
# 50,000 subjects, and growing with them). LIMIT keeps the probe per subject.
STORED_WINNER = """(
    SELECT s.event_id, s.occurred_at, s.unit FROM subjects s
    WHERE s.indicator = b.indicator AND s.subject = b.subject
    LIMIT 1
) s"""

# Winners so far that an earlier event of this batch beats: their count moves.
FIND_DETHRONED = f"""
INSERT INTO batch_dethroned
SELECT s.event_id
FROM batch_subjects b
CROSS JOIN LATERAL {STORED_WINNER}
WHERE b.first AND {earlier("b", "s")}
"""

MARK_SUBJECT_DUPLICATES = f"""
WITH losers AS (
    SELECT b.event_id
    FROM batch_subjects b
    LEFT JOIN LATERAL {STORED_WINNER} ON true
    WHERE NOT b.first OR (s.event_id IS NOT NULL AND {earlier("s", "b")})
), marked AS (
    -- each by its primary key: joined to the temporary tables, whose size the planner does
    -- not know, every stored event was hashed instead (all of `events` read for a batch
    -- with one repeated citizen: 24 ms at 100,000 events, growing with them)
    UPDATE events e SET counted = false
    WHERE e.event_id = ANY (ARRAY(SELECT event_id FROM losers
                                  UNION ALL SELECT event_id FROM batch_dethroned))
    RETURNING e.event_id
)
UPDATE batch_new n SET counted = false FROM losers l WHERE n.event_id = l.event_id
"""

UPSERT_SUBJECT_WINNERS = f"""
INSERT INTO subjects AS s (indicator, subject, event_id, occurred_at, unit)
SELECT indicator, subject, event_id, occurred_at, unit FROM batch_subjects WHERE first
ORDER BY 1, 2
ON CONFLICT (indicator, subject) DO UPDATE
SET event_id = EXCLUDED.event_id, occurred_at = EXCLUDED.occurred_at, unit = EXCLUDED.unit
WHERE {earlier("EXCLUDED", "s")}
"""

# recount: the winners again from every stored event, and `counted` from them
RECOUNT_SUBJECTS = f"""
TRUNCATE subjects;
INSERT INTO subjects (indicator, subject, event_id, occurred_at, unit)
SELECT DISTINCT ON (indicator, subject) indicator, subject, event_id, occurred_at, unit
FROM events e
WHERE {counts_once("e")}
ORDER BY indicator, subject, {EARLIEST_FIRST};
UPDATE events e
SET counted = (NOT ({counts_once("e")})
               OR EXISTS (SELECT 1 FROM subjects s WHERE s.event_id = e.event_id))
WHERE e.subject IS NOT NULL;
"""

# as_of: reads `counted`, as kept by the two forms above.

# -- rule 3: a unit's latest snapshot sets its own value ---------------------------------
# Latest by (occurred_at, event_id); every snapshot counts (subjects are increments only).
LATEST_FIRST = "e.occurred_at DESC, e.event_id DESC"

# apply: the batch's latest snapshot per key replaces the stored one if it is later
UPDATE_SNAPSHOTS = f"""
WITH latest AS (
    SELECT DISTINCT ON (e.campaign_id, e.unit, e.indicator)
           e.campaign_id, e.unit, e.indicator, e.occurred_at, e.event_id, e.value
    FROM batch_applied e
    WHERE e.kind = 'snapshot'
    ORDER BY e.campaign_id, e.unit, e.indicator, {LATEST_FIRST}
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

# recount: forget the own columns, then the latest stored snapshot per key
RECOUNT_RESET = """
UPDATE progress SET snap_at = NULL, snap_event_id = NULL, snap_value = NULL, incr_after = 0,
                    own_last_event_at = NULL
WHERE """ + RECOUNT_SCOPE.format(col="campaign_id")

RECOUNT_SNAPSHOTS = f"""
WITH snaps AS (
    SELECT DISTINCT ON (c.id, e.unit, e.indicator)
           c.id AS campaign_id, e.unit, e.indicator, e.occurred_at, e.event_id, e.value
    FROM events e
    JOIN campaigns c ON {IN_CAMPAIGN}
    WHERE e.kind = 'snapshot' AND {RECOUNT_SCOPE.format(col="c.id")}
    ORDER BY c.id, e.unit, e.indicator, {LATEST_FIRST}
)
UPDATE progress p SET snap_at = s.occurred_at, snap_event_id = s.event_id, snap_value = s.value
FROM snaps s
WHERE p.campaign_id = s.campaign_id AND p.unit = s.unit AND p.indicator = s.indicator
"""

# as_of: the latest snapshot in [start, T] per (unit, indicator)
AS_OF_SNAPS = f"""
    SELECT DISTINCT ON (e.unit, e.indicator) e.unit, e.indicator, e.occurred_at, e.value
    FROM events e JOIN own_units o ON o.code = e.unit
    WHERE {AS_OF_IN_WINDOW} AND e.kind = 'snapshot'
    ORDER BY e.unit, e.indicator, {LATEST_FIRST}"""

# -- rule 4: counted increments add after the latest snapshot (or to the baseline) -------
# The own value: the latest snapshot's, else the baseline; plus `incr_after`.
OWN_VALUE = "coalesce(p.snap_value, p.own_baseline) + p.incr_after"

# apply: the batch's increments that move a key's own value (`a` an applied event, `k` its
# key): the counted ones after the key's snapshot, where that stayed (the row is locked, so
# k.snap_at is current; a resnapped key's are summed again from the history by
# RECOUNT_AFTER_SNAPSHOT). `batch.SPREAD` adds them to `incr_after` in the one update each
# key's row gets in a batch, and `rollups.APPLY_DAY_CHANGES` splits them over their days.
MOVES_OWN_VALUE = (
    "a.kind = 'increment' AND NOT k.resnapped AND (k.snap_at IS NULL OR a.occurred_at > k.snap_at)"
)
BATCH_INCREMENTS = f"""
    SELECT a.campaign_id, a.unit, a.indicator, sum(a.value)::bigint AS incr
    FROM batch_applied a
    JOIN batch_keys k USING (campaign_id, unit, indicator)
    WHERE {MOVES_OWN_VALUE}
    GROUP BY 1, 2, 3"""

# apply: a key whose snapshot moved sums its stored increments after the new one again
RECOUNT_AFTER_SNAPSHOT = f"""
UPDATE progress p
SET incr_after = coalesce((
    SELECT sum(e.value) FROM events e
    WHERE e.unit = p.unit AND e.indicator = p.indicator AND e.kind = 'increment' AND e.counted
      AND e.occurred_at > p.snap_at AND {IN_CAMPAIGN}
), 0)
FROM batch_keys k, campaigns c
WHERE k.resnapped AND c.id = k.campaign_id
  AND p.campaign_id = k.campaign_id AND p.unit = k.unit AND p.indicator = k.indicator
"""

# recount: every key's increments after its snapshot, and its last counted event
RECOUNT_INCREMENTS = f"""
WITH own AS (
    SELECT p.campaign_id, p.unit, p.indicator,
           coalesce(sum(e.value) FILTER (
               WHERE e.kind = 'increment' AND (p.snap_at IS NULL OR e.occurred_at > p.snap_at)
           ), 0) AS incr_after,
           max(e.occurred_at) AS last_at
    FROM events e
    JOIN campaigns c ON {IN_CAMPAIGN}
    JOIN progress p ON p.campaign_id = c.id AND p.unit = e.unit AND p.indicator = e.indicator
    WHERE e.counted AND {RECOUNT_SCOPE.format(col="c.id")}
    GROUP BY 1, 2, 3
)
UPDATE progress p SET incr_after = o.incr_after, own_last_event_at = o.last_at
FROM own o
WHERE p.campaign_id = o.campaign_id AND p.unit = o.unit AND p.indicator = o.indicator
"""

# as_of: counted increments in [start, T] after the latest snapshot, and the last event
AS_OF_INCREMENTS = f"""
    SELECT e.unit, e.indicator, sum(e.value) AS total
    FROM events e
    JOIN own_units o ON o.code = e.unit
    LEFT JOIN snaps s ON s.unit = e.unit AND s.indicator = e.indicator
    WHERE {AS_OF_IN_WINDOW} AND e.kind = 'increment' AND e.counted
      AND (s.occurred_at IS NULL OR e.occurred_at > s.occurred_at)
    GROUP BY e.unit, e.indicator"""

# -- rule 5: the last report is the latest counted event ---------------------------------
# (apply moves it forward in `tiendo.counting.batch.SPREAD`; a withdrawn subject winner
# may have been it, so the units that lost one take it again from what still counts.)
RELAST_OWN = f"""
UPDATE progress p
SET own_last_event_at = (
    SELECT max(e.occurred_at) FROM events e
    WHERE e.unit = p.unit AND e.indicator = p.indicator AND e.counted AND {IN_CAMPAIGN})
FROM (SELECT DISTINCT campaign_id, unit, indicator FROM batch_applied WHERE adjustment) a
JOIN campaigns c ON c.id = a.campaign_id
WHERE p.campaign_id = a.campaign_id AND p.unit = a.unit AND p.indicator = a.indicator
"""

# recount: `last_at` of RECOUNT_INCREMENTS. as_of:
AS_OF_LASTS = f"""
    SELECT e.unit, e.indicator, max(e.occurred_at) AS last_at
    FROM events e JOIN own_units o ON o.code = e.unit
    WHERE {AS_OF_IN_WINDOW} AND e.counted
    GROUP BY e.unit, e.indicator"""

# -- rule 6: a unit's value is its own plus its children's (the rollup) ------------------
# On the tree of the moment reported (docs/units-over-time.md): each version's own value
# lands where `unit_anchors` says (itself while in force, a closed version where its people
# went), or, through a split with shares, by `aggregator_read.carry_shared`; each unit of
# the tree sums what landed in its subtree.
# apply: `tiendo.counting.batch.SPREAD` adds each own change to its landing unit and its
# ancestors; recount: `batch.RECOMPUTE_VALUES` sums the own values again.
# as_of: each requested root sums its subtree's own values at T; $6: the moment whose tree
# (`aggregator_read.tree_moment`) the figures are read on.
VALUES_AS_OF = f"""
WITH tree AS (
    SELECT aggregator_read.tree_moment($6) AS m
), roots AS (
    SELECT DISTINCT code FROM unnest($1::text[]) AS r (code)
), members AS (
    -- each unit of the tree under (or equal to) a requested root, via its lineage:
    -- O(units x depth), hash-joined (`= ANY` of a national tree's 11,000 roots compared
    -- every pair: 9 s)
    SELECT lineage.code AS root, u.code
    FROM tree
    JOIN units u ON u.valid_from <= tree.m AND tree.m < coalesce(u.valid_to, 'infinity')
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    JOIN roots ON roots.code = lineage.code
), own_units AS (
    -- every version whose figures land on a member: anchored there, or carried by shares
    SELECT a.unit AS code
    FROM tree JOIN unit_anchors a ON a.tree_at = tree.m
    WHERE a.anchor IN (SELECT code FROM members)
    UNION
    SELECT v.code
    FROM tree JOIN units v ON v.valid_to <= tree.m
    WHERE NOT EXISTS (SELECT 1 FROM unit_anchors a WHERE a.tree_at = tree.m AND a.unit = v.code)
), snaps AS ({AS_OF_SNAPS}
), incs AS ({AS_OF_INCREMENTS}
), lasts AS ({AS_OF_LASTS}
), own AS (
    SELECT o.code, i.indicator,
           coalesce(s.value, coalesce(t.baseline, 0)) + coalesce(n.total, 0) AS value,
           l.last_at
    FROM own_units o
    CROSS JOIN unnest($3::text[]) AS i (indicator)
    LEFT JOIN snaps s ON s.unit = o.code AND s.indicator = i.indicator
    LEFT JOIN incs n ON n.unit = o.code AND n.indicator = i.indicator
    LEFT JOIN lasts l ON l.unit = o.code AND l.indicator = i.indicator
    LEFT JOIN targets t
           ON t.campaign_id = $2 AND t.unit = o.code AND t.indicator = i.indicator
), landed AS (
    SELECT a.anchor AS code, own.indicator, own.value, own.last_at
    FROM tree JOIN unit_anchors a ON a.tree_at = tree.m JOIN own ON own.code = a.unit
    UNION ALL
    SELECT s.unit, s.grp, s.amount, s.last_at
    FROM tree,
         (SELECT array_agg(own.indicator) AS g, array_agg(own.code) AS u,
                 array_agg(own.value::bigint) AS v, array_agg(own.last_at) AS l
          FROM own, tree
          WHERE NOT EXISTS (SELECT 1 FROM unit_anchors a
                            WHERE a.tree_at = tree.m AND a.unit = own.code)) x
    CROSS JOIN LATERAL aggregator_read.carry_shared(tree.m, x.g, x.u, x.v, x.l) s
)
SELECT m.root, l.indicator, sum(l.value)::bigint AS value, max(l.last_at) AS last_event_at
FROM members m JOIN landed l ON l.code = m.code
GROUP BY m.root, l.indicator
"""
