-- The boards' comparison of a campaign with the one before it, at the same day of each
-- (docs/units-over-time.md "Comparisons over time"): one row per (campaign, the earlier
-- campaign, indicator, unit, day), for the root units of the campaign's tree and their
-- children. Written by the aggregator's metrics pass once per day of the campaign: both
-- figures are history by then (the moment compared is a whole day past), so a day's rows
-- never change, and Grafana reads them instead of carrying 2023's events at every refresh.
CREATE TABLE IF NOT EXISTS aggregator.board_comparisons (
    campaign_id text NOT NULL REFERENCES aggregator.campaigns (id) ON DELETE CASCADE,
    other_id    text NOT NULL REFERENCES aggregator.campaigns (id) ON DELETE CASCADE,
    indicator   text NOT NULL,
    unit        text NOT NULL,
    day         integer NOT NULL,
    level       integer NOT NULL,
    value       bigint NOT NULL,
    other_value bigint NOT NULL,
    -- of a root's other_value: what splits without shares left at it
    unallocated bigint NOT NULL DEFAULT 0,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, other_id, indicator, day, unit)
);
