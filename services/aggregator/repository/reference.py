"""Reference data: the unit tree, campaigns, targets, the plan of each campaign, audit."""

# -- reference data (admin) ---------------------------------------------------------------
UPSERT_UNIT = """
INSERT INTO units (code, name, type, level, parent_code, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (code) DO UPDATE
SET name = EXCLUDED.name, type = EXCLUDED.type, level = EXCLUDED.level,
    parent_code = EXCLUDED.parent_code, updated_at = now()
"""


# The chiefs' contacts belong to the notifier: the contact columns of a units import go to
# the function it publishes for them (notifier migration 006), which runs with its rights.
HAND_OVER_CONTACTS = "SELECT notifier.hand_over_unit_contacts($1::jsonb)"


# Ancestors (root first) of every unit, recomputed from parent links after an upsert.
REFRESH_ANCESTORS = """
WITH RECURSIVE chain AS (
    SELECT code, ARRAY[]::text[] AS ancestors FROM units WHERE parent_code IS NULL
    UNION ALL
    SELECT u.code, c.ancestors || u.parent_code
    FROM units u JOIN chain c ON u.parent_code = c.code
)
UPDATE units u SET ancestors = chain.ancestors
FROM chain WHERE chain.code = u.code AND u.ancestors IS DISTINCT FROM chain.ancestors
"""


COUNT_ORPHANS = """
SELECT count(*) FROM units u
WHERE u.parent_code IS NOT NULL
  AND cardinality(u.ancestors) <> u.level - 1
"""


SELECT_UNIT = "SELECT * FROM units WHERE code = $1"


SELECT_UNITS_BY_CODE = "SELECT * FROM units WHERE code = ANY ($1::text[])"


SELECT_CHILDREN = "SELECT * FROM units WHERE parent_code = $1 ORDER BY code"


SELECT_TREE = "SELECT code, parent_code, level FROM units"


UPSERT_CAMPAIGN = """
INSERT INTO campaigns (id, name, starts_at, deadline, timezone, indicators, behind_threshold,
                       stale_after, milestones, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, starts_at = EXCLUDED.starts_at, deadline = EXCLUDED.deadline,
    timezone = EXCLUDED.timezone, indicators = EXCLUDED.indicators,
    behind_threshold = EXCLUDED.behind_threshold, stale_after = EXCLUDED.stale_after,
    milestones = EXCLUDED.milestones, updated_at = now()
"""


SELECT_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1"


SELECT_CAMPAIGNS = "SELECT * FROM campaigns ORDER BY starts_at DESC, id"


UPSERT_TARGET = """
INSERT INTO targets (campaign_id, unit, indicator, target, baseline, deadline)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET target = EXCLUDED.target, baseline = EXCLUDED.baseline, deadline = EXCLUDED.deadline
"""


SELECT_TARGETS = (
    "SELECT unit, indicator, target, baseline, deadline FROM targets WHERE campaign_id = $1"
)


ENSURE_CAMPAIGN_ROWS = """
INSERT INTO progress (campaign_id, unit, indicator)
SELECT c.id, u.code, i.code
FROM campaigns c CROSS JOIN units u CROSS JOIN unnest(c.indicators) AS i (code)
WHERE c.id = $1
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""


# An indicator taken out of a campaign leaves its boards, feed and metrics.
DELETE_DROPPED_INDICATORS = """
DELETE FROM progress p
USING campaigns c
WHERE c.id = $1 AND p.campaign_id = c.id AND NOT (p.indicator = ANY (c.indicators))
"""


PLAN_COLUMNS = ("unit", "indicator", "own_baseline", "baseline", "target", "deadline")


CREATE_PLAN_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS plan_in (
    unit text, indicator text, own_baseline bigint, baseline bigint, target bigint,
    deadline timestamptz
) ON COMMIT DROP
"""


APPLY_PLAN = """
UPDATE progress p
SET own_baseline = s.own_baseline, baseline = s.baseline, target = s.target,
    deadline = s.deadline, updated_at = now()
FROM plan_in s
WHERE p.campaign_id = $1 AND p.unit = s.unit AND p.indicator = s.indicator
"""


# Subtree values from the own columns: the authoritative rollup, used after re-planning.
RECOMPUTE_VALUES = """
UPDATE progress p
SET value = s.value, last_event_at = s.last_event_at
FROM (
    SELECT a.campaign_id, lineage.code AS unit, a.indicator,
           sum(coalesce(a.snap_value, a.own_baseline) + a.incr_after) AS value,
           max(a.own_last_event_at) AS last_event_at
    FROM progress a
    JOIN units u ON u.code = a.unit
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    WHERE a.campaign_id = $1
    GROUP BY 1, 2, 3
) s
WHERE p.campaign_id = s.campaign_id AND p.unit = s.unit AND p.indicator = s.indicator
  AND (p.value, p.last_event_at) IS DISTINCT FROM (s.value, s.last_event_at)
"""


# What the campaign check (`validation.py`) needs, and a stamp that moves with any change
# of a campaign made through the admin API.
SELECT_CAMPAIGNS_STAMP = "SELECT count(*), max(updated_at) FROM campaigns"


SELECT_INDICATOR_CODES = "SELECT code FROM indicators"


SELECT_DATABASE_TIMEZONES = "SELECT name FROM pg_timezone_names"


SELECT_TARGET_DEADLINES = """
SELECT campaign_id, unit, indicator, deadline FROM targets
WHERE deadline IS NOT NULL AND ($1::text IS NULL OR campaign_id = $1)
"""


INSERT_AUDIT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"
