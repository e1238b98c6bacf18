-- Day rollups of subtree values (issue 15, `tiendo.counting.rollups`): per (campaign, unit,
-- indicator, local day of the campaign) the change of the unit's subtree value over the day
-- and the counted increments of the day in the subtree. The live boards take a week-ago
-- value (run rate), days behind in a row and the drill-down's daily bars from here instead
-- of the event history: value at the end of day D = progress.value - sum(change, days > D).
-- Kept by the apply's transaction and recounted by every re-plan, like the counters.
CREATE TABLE IF NOT EXISTS aggregator.subtree_days (
    campaign_id text NOT NULL REFERENCES aggregator.campaigns (id) ON DELETE CASCADE,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    day         date NOT NULL,
    change      bigint NOT NULL DEFAULT 0,
    increments  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, unit, indicator, day)
-- rewritten in place by every batch, as progress and daily_counts are (migration 005)
) WITH (fillfactor = 70);
-- the boards read a few recent days of many units of one indicator (run rates, a
-- leaderboard's days behind); no column of it changes in place, so updates stay HOT
CREATE INDEX IF NOT EXISTS subtree_days_recent
    ON aggregator.subtree_days (campaign_id, indicator, day);

-- The notifier judges through tiendo/board, which now reads these.
CREATE OR REPLACE VIEW aggregator_read.subtree_days AS
    SELECT campaign_id, unit, indicator, day, change, increments FROM aggregator.subtree_days;
GRANT SELECT ON aggregator_read.subtree_days TO tiendo_notifier;

-- A deployment upgraded in place: each campaign's rows from its stored events, as
-- `tiendo.counting.rollups.RECOUNT_DAY_CHANGES` computes them (this copy is frozen with
-- the migration; the module's form is the one kept up to date).
SET LOCAL search_path = aggregator, public;
DO $$
DECLARE
    campaign text;
BEGIN
    FOR campaign IN SELECT id FROM aggregator.campaigns LOOP
        WITH c AS (
            SELECT * FROM campaigns WHERE id = campaign
        ), ev AS (
            SELECT e.unit, e.indicator, (e.occurred_at AT TIME ZONE c.timezone)::date AS day,
                   e.kind, e.value, e.occurred_at, e.event_id
            FROM events e JOIN c ON e.indicator = ANY (c.indicators) AND e.occurred_at >= c.starts_at AND e.occurred_at <= c.deadline
            WHERE e.counted
        ), snaps AS (
            -- each key's latest snapshot of each day
            SELECT DISTINCT ON (e.unit, e.indicator, e.day)
                   e.unit, e.indicator, e.day, e.occurred_at AS snap_at, e.value AS snap_value
            FROM ev e
            WHERE e.kind = 'snapshot'
            ORDER BY e.unit, e.indicator, e.day, e.occurred_at DESC, e.event_id DESC
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
            LEFT JOIN progress p ON p.campaign_id = campaign AND p.unit = s.unit AND p.indicator = s.indicator
            WINDOW w AS (PARTITION BY s.unit, s.indicator, s.seg ORDER BY s.day)
        ), own AS (
            SELECT unit, indicator, day, increments,
                   end_value - coalesce(
                       lag(end_value) OVER (PARTITION BY unit, indicator ORDER BY day), base
                   ) AS change
            FROM ends
        )
        INSERT INTO subtree_days (campaign_id, unit, indicator, day, change, increments)
        SELECT campaign, lineage.code, o.indicator, o.day, sum(o.change), sum(o.increments)
        FROM own o
        JOIN c ON true
        JOIN unit_anchors a
          ON a.tree_at = coalesce(c.tree_at, '-infinity'::timestamptz) AND a.unit = o.unit
        JOIN units u ON u.code = a.anchor
        CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
        GROUP BY 2, 3, 4;
    END LOOP;
END $$;
