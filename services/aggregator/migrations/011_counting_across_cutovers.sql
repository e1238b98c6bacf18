-- Counting across a cut-over (issue 13, docs/units-over-time.md "Campaigns across a
-- change"). A campaign reports at a moment on the tree in force then; every version closed
-- by that moment is carried into the versions in force through `unit_transfers`:
-- `whole` into its successor, `part` with shares by largest remainder, `part` without
-- shares to the lowest unit above every successor.
--
-- The functions live in `aggregator_read`: `as_of` runs as the notifier too (its board),
-- which sees only that schema; they read the aggregator's tables through its views.

-- The tree moments: the boundaries at which the tree changes. A moment's tree is the
-- versions in force then; every moment between two boundaries has the tree of the earlier.
CREATE OR REPLACE FUNCTION aggregator_read.tree_moment(at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(b), '-infinity')
    FROM (SELECT valid_from AS b FROM aggregator_read.units WHERE valid_from <= at
          UNION ALL
          SELECT valid_to FROM aggregator_read.units WHERE valid_to <= at) x
$$;

-- Split a total over shares (in the order given: the callers order successors by key) so
-- the integer parts sum exactly to it: each part is the floor of its quota, and the units
-- left over go one each to the largest fractional remainders, ties to the earlier share.
-- Shares are normalised by their sum, so a set a rounding short of 1 still sums exactly.
-- Twin: tiendo.counting.carry.allocate (tests hold them equal).
CREATE OR REPLACE FUNCTION aggregator_read.allocate(total bigint, shares numeric[])
RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    WITH s AS (
        SELECT i, total * share / sum(share) OVER () AS quota
        FROM unnest(shares) WITH ORDINALITY AS x (share, i)
    ), f AS (
        SELECT i, floor(quota)::bigint AS base, quota - floor(quota) AS frac FROM s
    ), r AS (
        SELECT i, base,
               row_number() OVER (ORDER BY frac DESC, i) AS rank,
               total - sum(base) OVER () AS left_over
        FROM f
    )
    SELECT coalesce(array_agg(base + (rank <= left_over)::int ORDER BY i), '{}') FROM r
$$;

-- Where each version's figures land on the tree of each moment, when that needs no
-- arithmetic: a version in force lands on itself; a closed one that went `whole` lands
-- where its successor does; one split without shares on the lowest unit above every unit
-- its people reached. A version whose figures pass through a split *with* shares has no
-- row: `carry_shared` allocates it. Kept by `refresh_unit_anchors` at every tree change,
-- so applying a batch is one join (the national tree: 11,000 units a moment).
CREATE TABLE IF NOT EXISTS aggregator.unit_anchors (
    tree_at timestamptz NOT NULL,
    unit    text NOT NULL,
    anchor  text NOT NULL,
    PRIMARY KEY (tree_at, unit)
);

CREATE OR REPLACE VIEW aggregator_read.unit_anchors AS
    SELECT tree_at, unit, anchor FROM aggregator.unit_anchors;
GRANT SELECT ON aggregator_read.unit_anchors TO tiendo_notifier;

-- With the owner's rights: the service's role may rewrite the table but only its owner
-- may ANALYZE it (every name below is qualified).
CREATE OR REPLACE FUNCTION aggregator.refresh_unit_anchors() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM aggregator.unit_anchors;
    INSERT INTO aggregator.unit_anchors (tree_at, unit, anchor)
    WITH RECURSIVE moments AS (
        SELECT '-infinity'::timestamptz AS m
        UNION SELECT valid_from FROM aggregator.units
        UNION SELECT valid_to FROM aggregator.units WHERE valid_to IS NOT NULL
    ), in_force AS (
        SELECT m.m, u.code FROM moments m JOIN aggregator.units u
          ON u.valid_from <= m.m AND m.m < coalesce(u.valid_to, 'infinity')
    ), landing (m, unit, landing) AS (
        -- every version in force at m that a version's people reached, by any path
        SELECT m, code, code FROM in_force
        UNION
        SELECT l.m, t.old_unit, l.landing
        FROM landing l
        JOIN aggregator.unit_transfers t ON t.new_unit = l.unit
        JOIN aggregator.units o ON o.code = t.old_unit AND o.valid_to <= l.m
    ), unshared AS (
        SELECT DISTINCT t.old_unit AS unit
        FROM aggregator.unit_transfers t
        WHERE t.transfer = 'part' AND t.share IS NULL
    ), lowest_common AS (
        -- the deepest unit on the lineage of every landing (the lineage within the tree
        -- of m: a version's ancestors are in force as long as it is)
        SELECT DISTINCT ON (l.m, l.unit) l.m, l.unit, x.code AS anchor
        FROM landing l
        JOIN unshared s ON s.unit = l.unit
        JOIN aggregator.units lu ON lu.code = l.landing
        CROSS JOIN LATERAL unnest(lu.ancestors || lu.code) WITH ORDINALITY AS x (code, depth)
        GROUP BY l.m, l.unit, x.code
        HAVING count(*) = (SELECT count(*) FROM landing l2 WHERE l2.m = l.m AND l2.unit = l.unit)
        ORDER BY l.m, l.unit, max(x.depth) DESC
    ), anchors (m, unit, anchor) AS (
        SELECT m, code, code FROM in_force
        UNION ALL
        SELECT m, unit, anchor FROM lowest_common
        UNION ALL
        SELECT a.m, t.old_unit, a.anchor
        FROM anchors a
        JOIN aggregator.unit_transfers t ON t.new_unit = a.unit AND t.transfer = 'whole'
        JOIN aggregator.units o ON o.code = t.old_unit AND o.valid_to <= a.m
    )
    SELECT DISTINCT ON (m, unit) m, unit, anchor FROM anchors ORDER BY m, unit;
    -- just rewritten: without statistics the planner takes its 11,000 rows a moment for
    -- thirty and nests loops over every campaign's rows (seconds instead of milliseconds)
    ANALYZE aggregator.unit_anchors;
$$;

SELECT aggregator.refresh_unit_anchors();

-- The figures of versions that pass through a split with shares, carried onto the tree
-- of `tree_at`: each closed version's total (its own figure and what was carried into it)
-- goes, at its cut-over, `whole` to its successor or by `allocate` over its shares, until
-- it reaches a version with an anchor. Cut-overs are taken in time order, so a total is
-- complete before it is split. `grp` keeps figures apart (an indicator); a version not yet
-- in force at `tree_at` carries nothing. Returns (grp, anchor, amount, last): `last`, the
-- latest event among the versions carried there.
CREATE OR REPLACE FUNCTION aggregator_read.carry_shared(
    tree_at timestamptz, grps text[], units text[], amounts bigint[], lasts timestamptz[]
) RETURNS TABLE (grp text, unit text, amount bigint, last_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    pending jsonb;
    cut timestamptz;
BEGIN
    IF units IS NULL OR cardinality(units) = 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_array(x.g, x.u, x.a, x.l)), '[]')
    INTO pending
    FROM unnest(grps, units, amounts, lasts) AS x (g, u, a, l)
    JOIN aggregator_read.units v ON v.code = x.u
    WHERE v.valid_from <= tree_at;
    LOOP
        -- what already has an anchor is done
        RETURN QUERY
            SELECT p->>0, a.anchor, (p->>2)::bigint, (p->>3)::timestamptz
            FROM jsonb_array_elements(pending) p
            JOIN aggregator_read.unit_anchors a ON a.tree_at = carry_shared.tree_at
                                                AND a.unit = p->>1;
        SELECT min(v.valid_to) INTO cut
        FROM jsonb_array_elements(pending) p
        JOIN aggregator_read.units v ON v.code = p->>1
        WHERE v.valid_to <= carry_shared.tree_at
          AND NOT EXISTS (SELECT 1 FROM aggregator_read.unit_anchors a
                          WHERE a.tree_at = carry_shared.tree_at AND a.unit = p->>1);
        EXIT WHEN cut IS NULL;
        WITH rows AS (
            SELECT p->>0 AS g, p->>1 AS u, (p->>2)::bigint AS a, (p->>3)::timestamptz AS l,
                   v.valid_to = cut AS closing
            FROM jsonb_array_elements(pending) p
            JOIN aggregator_read.units v ON v.code = p->>1
            WHERE NOT EXISTS (SELECT 1 FROM aggregator_read.unit_anchors a
                              WHERE a.tree_at = carry_shared.tree_at AND a.unit = p->>1)
        ), closing AS (
            SELECT g, u, sum(a)::bigint AS total, max(l) AS l FROM rows WHERE closing
            GROUP BY g, u
        ), moved AS (
            SELECT g, u, a, l FROM rows WHERE NOT closing
            UNION ALL
            SELECT c.g, t.new_unit, c.total, c.l
            FROM closing c JOIN aggregator_read.unit_transfers t
              ON t.old_unit = c.u AND t.transfer = 'whole'
            UNION ALL
            SELECT c.g, s.new_unit, s.part, c.l
            FROM closing c
            CROSS JOIN LATERAL (
                SELECT array_agg(t.new_unit ORDER BY t.new_unit) AS successors,
                       array_agg(t.share ORDER BY t.new_unit) AS shares
                FROM aggregator_read.unit_transfers t
                WHERE t.old_unit = c.u AND t.transfer = 'part' AND t.share IS NOT NULL
            ) split
            CROSS JOIN LATERAL unnest(
                split.successors, aggregator_read.allocate(c.total, split.shares)
            ) AS s (new_unit, part)
            WHERE split.successors IS NOT NULL
        )
        SELECT coalesce(jsonb_agg(jsonb_build_array(g, u, a, l)), '[]') INTO pending
        FROM moved;
    END LOOP;
END $$;

-- Boards judge the units of the tree the campaign's live counters are kept on.
CREATE OR REPLACE VIEW aggregator_read.campaigns AS
    SELECT id, name, starts_at, deadline, timezone, indicators, behind_threshold,
           stale_after, milestones, updated_at, tree_at
    FROM aggregator.campaigns;

-- Campaigns planned before versions: on the tree of their moment now.
UPDATE aggregator.campaigns
SET tree_at = aggregator_read.tree_moment(least(greatest(now(), starts_at), deadline))
WHERE tree_at IS NULL;

GRANT USAGE ON SCHEMA aggregator_read TO tiendo_aggregator;
GRANT SELECT ON ALL TABLES IN SCHEMA aggregator_read TO tiendo_aggregator;
REVOKE EXECUTE ON FUNCTION aggregator.refresh_unit_anchors() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aggregator.refresh_unit_anchors() TO tiendo_aggregator;
GRANT EXECUTE ON FUNCTION aggregator_read.tree_moment(timestamptz),
    aggregator_read.allocate(bigint, numeric[]),
    aggregator_read.carry_shared(timestamptz, text[], text[], bigint[], timestamptz[])
    TO tiendo_aggregator, tiendo_notifier;
