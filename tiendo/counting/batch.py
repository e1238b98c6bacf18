"""The live counters' bookkeeping around the rules of `tiendo.counting.rules`: staging a
batch, the idempotency check, the touched keys, the rollup of each change and the locks.
The rules themselves (what counts and how) are not here."""

from typing import Any

from tiendo.counting.content import content_hash
from tiendo.counting.rules import (
    BATCH_INCREMENTS,
    OWN_VALUE,
    STORED_WINNER,
    counts_once,
    earlier,
)
from tiendo.event import Event
from tiendo.unit_keys import TREE_ZONE

# Applying and re-planning (an admin change) both touch `value`; re-planning recomputes it
# from the own columns, so it must not interleave with an apply (a lost update otherwise).
# A rebuild takes the same key for the session.
COUNTERS_LOCK_KEY = 7301118
LOCK_APPLY = f"SELECT pg_advisory_xact_lock_shared({COUNTERS_LOCK_KEY})"
LOCK_REPLAN = f"SELECT pg_advisory_xact_lock({COUNTERS_LOCK_KEY})"
TRY_LOCK_APPLY = f"SELECT pg_try_advisory_xact_lock_shared({COUNTERS_LOCK_KEY})"

# The apply's statements run in milliseconds, but the planner, which knows its temporary
# tables only by their pages, can cost one above `jit_above_cost`: compiling the day
# rollups' statement then took 1.7 s of a 1.9 s statement. For the apply's transaction.
APPLY_SETTINGS = "SET LOCAL jit = off"

# The tree a campaign's live counters are kept on (`campaigns.tree_at`, set when it is
# planned; a campaign stored before versions existed: the tree that never changed).
TREE_AT = "coalesce(c.tree_at, '-infinity'::timestamptz)"

# Temp tables live per connection; the consumer keeps one connection for its life.
# They are created together (one implicit transaction), so the first says whether the
# connection has them; asking costs a round trip, where the six `IF NOT EXISTS` each
# looked up their table and sent a notice (4-6 ms a batch for `apply_events`).
HAS_STAGING = "SELECT to_regclass('pg_temp.batch_in') IS NOT NULL"
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS batch_in (
    event_id text, unit text, indicator text, kind text, value bigint,
    occurred_at timestamptz, subject text, received_at timestamptz, source text,
    kafka_partition integer, kafka_offset bigint, content_hash bytea, sent_unit text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_new (LIKE events) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_applied (
    campaign_id text, unit text, indicator text, kind text, value bigint,
    occurred_at timestamptz, event_id text, day date, adjustment boolean, hour integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_subjects (
    indicator text, subject text, event_id text, occurred_at timestamptz, unit text,
    first boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_days (
    campaign_id text, unit text, indicator text, day date, change bigint,
    increments bigint, events bigint, hours bigint[]
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_dethroned (event_id text PRIMARY KEY)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_keys (
    campaign_id text, unit text, indicator text, old_own bigint, snap_at timestamptz,
    resnapped boolean, last_at timestamptz, lineage text[], first_at timestamptz,
    old_last_at timestamptz,
    PRIMARY KEY (campaign_id, unit, indicator)
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


# Attribution (docs/units-over-time.md "Events"): an event names an official code; it counts
# for the version that code meant at `occurred_at`, whose key the rules downstream read as
# `unit`, the code as sent kept in `sent_unit` when it differs. A tree that never changed
# has every code its own key, in force since always: nothing moves. First, a reused code:
# its version in force then.
ATTRIBUTE_REUSED = """
UPDATE batch_in b SET sent_unit = b.unit, unit = u.code
FROM units u
WHERE u.admin_code = b.unit AND u.code <> b.unit
  AND u.valid_from <= b.occurred_at AND b.occurred_at < coalesce(u.valid_to, 'infinity')
  -- a tree that never changed skips the per-event look-up (one check of a small table)
  AND EXISTS (SELECT 1 FROM unit_transfers)
"""

# Then a retired code after its cut-over, within its grace: its version went `whole` into
# a successor, followed (a chain of cut-overs) to the one in force at `occurred_at`. A split
# stops the chain: the event is refused below, since dividing one citizen's act by shares
# would invent fractions of citizens.
ATTRIBUTE_RETIRED = """
WITH RECURSIVE retired AS (
    SELECT b.ctid AS row, b.unit AS sent, b.occurred_at AS at, v.code AS key
    FROM batch_in b
    CROSS JOIN LATERAL (
        SELECT v.code, v.grace_until FROM units v
        WHERE v.admin_code = b.unit AND v.valid_to <= b.occurred_at
        ORDER BY v.valid_from DESC LIMIT 1
    ) v
    WHERE EXISTS (SELECT 1 FROM unit_transfers)
      AND b.sent_unit IS NULL AND b.occurred_at < v.grace_until
      AND NOT EXISTS (
          SELECT 1 FROM units u
          WHERE u.admin_code = b.unit AND u.valid_from <= b.occurred_at
            AND b.occurred_at < coalesce(u.valid_to, 'infinity'))
    UNION ALL
    SELECT r.row, r.sent, r.at, t.new_unit
    FROM retired r
    JOIN units v ON v.code = r.key AND v.valid_to <= r.at
    JOIN unit_transfers t ON t.old_unit = r.key AND t.transfer = 'whole'
)
UPDATE batch_in b SET sent_unit = r.sent, unit = r.key
FROM retired r
JOIN units u ON u.code = r.key AND u.valid_from <= r.at AND r.at < coalesce(u.valid_to, 'infinity')
WHERE b.ctid = r.row
"""

# A tree change: the stored events that may move (sent with a code that has more than one
# period, or already moved once), staged as sent so the two statements above attribute
# them again. (A tree of one version per code has nothing to move.)
STAGE_STORED_FOR_ATTRIBUTION = """
INSERT INTO batch_in (event_id, unit, indicator, kind, value, occurred_at)
SELECT e.event_id, coalesce(e.sent_unit, e.unit), e.indicator, e.kind, e.value, e.occurred_at
FROM events e
WHERE e.sent_unit IS NOT NULL
   OR e.unit IN (SELECT admin_code FROM units
                 WHERE valid_to IS NOT NULL OR valid_from <> '-infinity')
"""

# ... and each moved to its key where one took it (re-attributed, or the sent code's own
# version in force then); the winner of a citizen's count follows its event.
MOVE_REATTRIBUTED = """
WITH found AS (
    SELECT b.event_id, b.unit AS key, b.sent_unit
    FROM batch_in b
    WHERE b.sent_unit IS NOT NULL
       OR EXISTS (SELECT 1 FROM units u
                  WHERE u.code = b.unit AND u.valid_from <= b.occurred_at
                    AND b.occurred_at < coalesce(u.valid_to, 'infinity'))
), moved AS (
    UPDATE events e SET unit = f.key, sent_unit = f.sent_unit
    FROM found f
    WHERE e.event_id = f.event_id
      AND (e.unit, e.sent_unit) IS DISTINCT FROM (f.key, f.sent_unit)
    RETURNING e.event_id, e.unit
), winners AS (
    UPDATE subjects s SET unit = m.unit FROM moved m WHERE s.event_id = m.event_id
)
SELECT count(*) FROM moved
"""

# The words of a split unit's dead-letter reason (`unit <code>{SPLIT}<day> into …`), which
# the consumer's metrics label `split_unit`.
SPLIT = " was split on "

# Take out of the batch what cannot be applied (a code that meant no version at
# `occurred_at`: unknown, retired past its grace, or split; an unknown indicator) in one
# pass; those not already applied earlier go to the dead letters.
TAKE_UNAPPLIABLE = f"""
WITH taken AS (
    -- (two left joins, hashed: the same test as `NOT EXISTS (unit in force) OR NOT EXISTS
    -- (indicator)`, which an OR keeps from becoming an anti-join, a look-up per event)
    DELETE FROM batch_in b
    USING (
        SELECT x.ctid AS row
        FROM batch_in x
        LEFT JOIN units u ON u.code = x.unit AND u.valid_from <= x.occurred_at
                         AND x.occurred_at < coalesce(u.valid_to, 'infinity')
        LEFT JOIN indicators i ON i.code = x.indicator
        WHERE u.code IS NULL OR i.code IS NULL
    ) bad
    WHERE b.ctid = bad.row
    RETURNING b.kafka_partition, b.kafka_offset, b.event_id, b.unit, b.indicator,
              b.occurred_at
)
SELECT t.kafka_partition, t.kafka_offset, t.event_id, t.unit, t.indicator,
       CASE WHEN split.successors IS NOT NULL
            THEN 'unit ' || t.unit || '{SPLIT}'
                 || (split.at AT TIME ZONE '{TREE_ZONE.key}')::date || ' into '
                 || split.successors || '; send the unit where it happened'
            WHEN NOT EXISTS (SELECT 1 FROM units u
                             WHERE u.code = t.unit AND u.valid_from <= t.occurred_at
                               AND t.occurred_at < coalesce(u.valid_to, 'infinity'))
            THEN 'unknown unit ' || t.unit
            ELSE 'unknown indicator ' || t.indicator END AS reason
FROM taken t
LEFT JOIN LATERAL (
    -- the code's version closed before the event, if it was split
    SELECT max(tr.at) AS at, string_agg(tr.new_unit, ', ' ORDER BY tr.new_unit) AS successors
    FROM (SELECT v.code FROM units v
          WHERE v.admin_code = t.unit AND v.valid_to <= t.occurred_at
          ORDER BY v.valid_from DESC LIMIT 1) v
    JOIN unit_transfers tr ON tr.old_unit = v.code AND tr.transfer = 'part'
) split ON true
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id)
"""

# The idempotency check: an event_id is applied once, forever (the primary key of
# `events`). Within one batch the first delivery wins.
_INSERT_NEW_EVENTS = """
WITH inserted AS (
    INSERT INTO events (event_id, unit, indicator, kind, value, occurred_at, subject,
                        received_at, source, kafka_partition, kafka_offset, content_hash,
                        sent_unit)
    SELECT {distinct} event_id, unit, indicator, kind, value, occurred_at, subject,
           received_at, source, kafka_partition, kafka_offset, content_hash, sent_unit
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

# Rows normally exist since the campaign was planned; a key of a unit added later gets one
# here, before `GROUP_KEYS` locks them. (Each key's target is looked up only where its row
# is missing: joined, the planner read the whole of `targets` for a batch of a thousand.)
ENSURE_PROGRESS_ROWS = """
INSERT INTO progress (campaign_id, unit, indicator, own_baseline)
SELECT k.campaign_id, k.unit, k.indicator,
       coalesce((SELECT t.baseline FROM targets t
                 WHERE t.campaign_id = k.campaign_id AND t.unit = k.unit
                   AND t.indicator = k.indicator), 0)
FROM (SELECT DISTINCT campaign_id, unit, indicator FROM batch_applied) k
WHERE NOT EXISTS (SELECT 1 FROM progress p
                  WHERE p.campaign_id = k.campaign_id AND p.unit = k.unit
                    AND p.indicator = k.indicator)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""

# Every (campaign, unit, indicator) the batch touches, once; the later statements work on
# these few keys rather than on every applied event. Each key's counter row is locked (in
# a fixed order: replicas cannot deadlock) and its own value, snapshot time and last event
# before the batch kept, to spread the difference; and the batch's earliest event, which
# with those tells the day rollups whether the batch reaches back before what the key has
# stored (`rollups.LATE`). With each key, where its figures land on its
# campaign's tree and that unit's ancestors (`lineage`, the units its changes are spread
# to): looked up once per key here instead of once per key and day by each rollup. A
# version carried by shares has no anchor: a null lineage, spread nowhere (its campaign is
# recounted, see BATCH_HAS_SHARED). One insert, no update of the keys after it: an update
# of every row left the temporary table twice its size, and the planner, which knows such
# a table only by its size, then read the whole of `progress` for the spread of a thousand
# keys rather than look each up.
GROUP_KEYS = f"""
WITH g AS (
    SELECT campaign_id, unit, indicator, max(occurred_at) FILTER (WHERE NOT adjustment) AS last_at,
           min(occurred_at) AS first_at
    FROM batch_applied
    GROUP BY 1, 2, 3
), locked AS (
    SELECT p.campaign_id, p.unit, p.indicator, p.snap_at, {OWN_VALUE} AS own, g.last_at,
           g.first_at, p.own_last_event_at
    FROM progress p
    JOIN g USING (campaign_id, unit, indicator)
    ORDER BY 1, 2, 3
    FOR UPDATE OF p
)
INSERT INTO batch_keys (campaign_id, unit, indicator, old_own, snap_at, resnapped, last_at,
                        lineage, first_at, old_last_at)
SELECT l.campaign_id, l.unit, l.indicator, l.own, l.snap_at, false, l.last_at,
       -- two primary-key look-ups per key, whatever the planner guesses of the batch
       (SELECT u.ancestors || u.code
        FROM unit_anchors a JOIN units u ON u.code = a.anchor
        WHERE a.tree_at = {TREE_AT} AND a.unit = l.unit),
       l.first_at, l.own_last_event_at
FROM locked l
JOIN campaigns c ON c.id = l.campaign_id
"""


# The staging tables are temporary, so autovacuum never gives the planner their sizes, only
# their pages: a backlog's batch (20,000 events) then had its (key, day) rows sorted and
# looked up one by one instead of hashed (the keys), and grouped by sorting 20,000 and then
# 40,000 rows instead of hashing them (the applied events: 35 ms of the day rollups' 190),
# and the spread of 5,000 keys looked each up rather than read `progress` once. Analyzed
# once the keys are in, for large batches only: on a live batch of 1,000 events the
# analysis cost more (3 ms) than it saved, and there the pages tell the size well enough
# (`GROUP_KEYS`). A sample of 3,000 rows (statistics target 10) is enough for the number
# of groups and costs a third of the default's 30,000.
ANALYZE_WORTH = "SELECT count(*) >= 5000 FROM batch_applied"
ANALYZE_BATCH = """
SET LOCAL default_statistics_target = 10;
ANALYZE batch_keys, batch_applied
"""


# Spread each unit's change of own value to where it lands on the campaign's tree (itself
# while in force; a closed version's anchor: `unit_anchors`, kept at tree changes) and that
# unit's ancestors (the rollup): the key's `lineage` (GROUP_KEYS); return every (campaign,
# unit, indicator) whose figures moved. A version carried by shares has no anchor: its
# campaign is recounted by `RECOMPUTE_VALUES` after this (`SHARED_CAMPAIGNS`).
#
# The same upsert adds each key's increments (`rules.BATCH_INCREMENTS`) to its own
# `incr_after` and moves its own last event, so that a key's row is updated once in the
# batch. (A row updated twice in one transaction has its foreign key checked again, a
# look-up of its campaign per key: 18 ms of a 3,500-event batch at national scale; and a
# separate UPDATE of these rows in a CTE of this statement would be one of two changes to
# one row, of which PostgreSQL keeps only one.) A key whose snapshot stayed changes by its
# increments alone, so only a resnapped key's row, whose own columns the snapshot's
# statements have set, is read here.
SPREAD = f"""
WITH incs AS ({BATCH_INCREMENTS}
), own AS (
    SELECT k.campaign_id, k.unit, k.indicator, k.last_at, k.lineage,
           coalesce(i.incr, 0) AS incr,
           CASE WHEN k.resnapped
                THEN (SELECT {OWN_VALUE} - k.old_own FROM progress p
                      WHERE p.campaign_id = k.campaign_id AND p.unit = k.unit
                        AND p.indicator = k.indicator)
                ELSE coalesce(i.incr, 0) END AS delta
    FROM batch_keys k
    LEFT JOIN incs i USING (campaign_id, unit, indicator)
), spread AS (
    SELECT campaign_id, unit, indicator, sum(delta)::bigint AS delta, sum(incr)::bigint AS incr,
           max(last_at) AS last_at, max(own_last_at) AS own_last_at
    FROM (
        SELECT o.campaign_id, lineage.code AS unit, o.indicator, o.delta, 0 AS incr,
               o.last_at, NULL::timestamptz AS own_last_at
        FROM own o
        CROSS JOIN LATERAL unnest(o.lineage) AS lineage (code)
        UNION ALL
        -- the key's own columns, wherever its figures land
        SELECT o.campaign_id, o.unit, o.indicator, 0, o.incr, NULL, o.last_at FROM own o
    ) x
    GROUP BY 1, 2, 3
)
INSERT INTO progress AS p (campaign_id, unit, indicator, value, incr_after, last_event_at,
                           own_last_event_at)
SELECT campaign_id, unit, indicator, delta, incr, last_at, own_last_at
FROM spread ORDER BY 1, 2, 3
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET value = p.value + EXCLUDED.value,
    incr_after = p.incr_after + EXCLUDED.incr_after,
    last_event_at = greatest(p.last_event_at, EXCLUDED.last_event_at),
    own_last_event_at = greatest(p.own_last_event_at, EXCLUDED.own_last_event_at),
    updated_at = now()
RETURNING p.campaign_id, p.unit, p.indicator
"""


# A version that passes through a split with shares on its way into a campaign's tree (a
# late event of a split unit's old period, after the campaign moved to the new tree, or a
# counted event of that period that a citizen's earlier event dethrones): an allocation by
# largest remainder does not split a change of the total the way it splits the total, so
# such a batch recounts its campaigns' values from the own columns (`RECOMPUTE_VALUES`)
# instead of spreading. It takes the re-plan lock rather than the shared one, since a
# recount from the own columns would lose a concurrent spread. Rare: old-period events of
# split units, and their citizens' earlier events; a tree without shares never asks.
#
# The own values a batch can move are its events' units' and its dethroned winners' (an
# event of a version carried by shares, dethroned by one sent on the new tree: found by
# the cut-over property test). A winner's unit is asked before the citizens are locked,
# and cannot change meanwhile: a batch that stores a winner on a version carried by shares
# has that version among its own events, so it holds the re-plan lock, which waits for
# this batch's shared one; and what makes a version carried by shares (trees, campaigns'
# moments, anchors) changes under the re-plan lock only.
BATCH_HAS_SHARED = f"""
SELECT EXISTS (SELECT 1 FROM unit_transfers WHERE share IS NOT NULL)
   AND EXISTS (
    SELECT 1
    FROM (SELECT unit FROM batch_in
          UNION ALL
          SELECT s.unit FROM batch_in b
          CROSS JOIN LATERAL {STORED_WINNER}
          WHERE {counts_once("b")} AND {earlier("b", "s")}) b
    JOIN units v ON v.code = b.unit AND v.valid_to IS NOT NULL
    JOIN campaigns c ON v.valid_to <= {TREE_AT}
    WHERE NOT EXISTS (SELECT 1 FROM unit_anchors a
                      WHERE a.tree_at = {TREE_AT} AND a.unit = b.unit))
"""

SHARED_CAMPAIGNS = f"""
SELECT DISTINCT k.campaign_id
FROM batch_keys k
JOIN campaigns c ON c.id = k.campaign_id
JOIN units v ON v.code = k.unit
WHERE v.valid_to <= {TREE_AT}
  AND NOT EXISTS (SELECT 1 FROM unit_anchors a WHERE a.tree_at = {TREE_AT} AND a.unit = k.unit)
ORDER BY 1
"""

# What the versions carried by shares bring to the trees of the campaigns of `c` (columns
# id, m: the tree moment): (campaign_id, unit, indicator, value, last_at) landed.
_SHARED_LANDED = """
    SELECT x.id AS campaign_id, s.unit, s.grp AS indicator, s.amount AS value, s.last_at
    FROM (SELECT c.id, c.m, array_agg(o.indicator) AS g, array_agg(o.unit) AS u,
                 array_agg(coalesce(o.snap_value, o.own_baseline) + o.incr_after) AS v,
                 array_agg(o.own_last_event_at) AS l
          FROM c
          JOIN units v ON v.valid_to <= c.m
          JOIN progress o ON o.campaign_id = c.id AND o.unit = v.code
          WHERE NOT EXISTS (SELECT 1 FROM unit_anchors n
                            WHERE n.tree_at = c.m AND n.unit = v.code)
          GROUP BY c.id, c.m) x
    CROSS JOIN LATERAL aggregator_read.carry_shared(x.m, x.g, x.u, x.v, x.l) s"""


# After RELAST_OWN (rule 5): the subtrees of the units that lost their last event take
# theirs again from the own last events of the versions landing in them.
RELAST_SUBTREES = f"""
WITH c AS (
    SELECT DISTINCT c.id, {TREE_AT} AS m
    FROM (SELECT DISTINCT campaign_id FROM batch_applied WHERE adjustment) a
    JOIN campaigns c ON c.id = a.campaign_id
), roots AS (
    SELECT DISTINCT a.campaign_id, lineage.code AS root, a.indicator, c.m AS tree_at
    FROM (SELECT DISTINCT campaign_id, unit, indicator FROM batch_applied WHERE adjustment) a
    JOIN c ON c.id = a.campaign_id
    JOIN unit_anchors n ON n.tree_at = c.m AND n.unit = a.unit
    JOIN units u ON u.code = n.anchor
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
), shared AS ({_SHARED_LANDED}
)
UPDATE progress p
SET last_event_at = (
    SELECT max(x.last_at) FROM (
        SELECT m.own_last_event_at AS last_at
        FROM progress m
        JOIN unit_anchors mn ON mn.tree_at = r.tree_at AND mn.unit = m.unit
        JOIN units mu ON mu.code = mn.anchor
        WHERE m.campaign_id = r.campaign_id AND m.indicator = r.indicator
          AND (mu.code = r.root OR r.root = ANY (mu.ancestors))
        UNION ALL
        SELECT s.last_at
        FROM shared s JOIN units su ON su.code = s.unit
        WHERE s.campaign_id = r.campaign_id AND s.indicator = r.indicator
          AND (su.code = r.root OR r.root = ANY (su.ancestors))) x)
FROM roots r
WHERE p.campaign_id = r.campaign_id AND p.unit = r.root AND p.indicator = r.indicator
"""


# Rule 6 from the own columns, for one campaign ($1) on its tree: every version's own value
# and last event carried to where it lands (anchored, or allocated by shares), summed up
# each landing unit's lineage. A version outside the tree shows nothing (0, no last event):
# it is never judged on a tree it is not part of. The authoritative rollup (re-planning,
# recounts); returns the keys whose figures moved.
RECOMPUTE_VALUES = f"""
WITH c AS (
    SELECT c.id, {TREE_AT} AS m FROM campaigns c WHERE c.id = $1
), own AS (
    SELECT a.unit, a.indicator, {OWN_VALUE.replace("p.", "a.")} AS value,
           a.own_last_event_at AS last_at
    FROM progress a WHERE a.campaign_id = $1
), landed AS (
    SELECT n.anchor AS unit, o.indicator, o.value, o.last_at
    FROM own o JOIN c ON true JOIN unit_anchors n ON n.tree_at = c.m AND n.unit = o.unit
    UNION ALL
    SELECT unit, indicator, value, last_at FROM ({_SHARED_LANDED}
    ) sh
), rolled AS (
    SELECT lineage.code AS unit, l.indicator, sum(l.value)::bigint AS value,
           max(l.last_at) AS last_event_at
    FROM landed l
    JOIN units u ON u.code = l.unit
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    GROUP BY 1, 2
), wanted AS (
    SELECT unit, indicator, value, last_event_at FROM rolled
    UNION ALL
    -- (not a left join of the rows to `rolled`: misestimated, that became a nested loop
    -- over 22,000 x 22,000 rows on a national tree)
    SELECT q.unit, q.indicator, 0, NULL
    FROM c
    JOIN progress q ON q.campaign_id = $1
    JOIN units u ON u.code = q.unit
    WHERE NOT (u.valid_from <= c.m AND c.m < coalesce(u.valid_to, 'infinity'))
)
UPDATE progress p
SET value = w.value, last_event_at = w.last_event_at
FROM wanted w
WHERE p.campaign_id = $1 AND p.unit = w.unit AND p.indicator = w.indicator
  AND (p.value, p.last_event_at) IS DISTINCT FROM (w.value, w.last_event_at)
RETURNING p.campaign_id, p.unit, p.indicator
"""
