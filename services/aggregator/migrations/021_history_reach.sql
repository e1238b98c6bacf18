-- How far back each transaction changed the day rollups (`tiendo.counting.reach`), for the
-- readers that keep each unit's value one run-rate window ago between passes (the metric
-- snapshot, the notifier: `tiendo.board.window`). Per (campaign, indicator, local day): how
-- many applied batches changed that day as their earliest, and, on '-infinity', how many
-- re-plans rewrote every day (and batches whose figures no day holds). A value kept for a
-- window that started on day D is stale once the sum over the days up to D has grown: a
-- report dated before the window's start (a backfill, a device back after a week offline)
-- moves it, one dated after does not. Rows only grow, and are never deleted (not with the
-- campaign either): a sum never comes back to one a reader kept.
CREATE TABLE IF NOT EXISTS aggregator.history_reach (
    campaign_id text NOT NULL,
    indicator   text NOT NULL,
    day         date NOT NULL,
    writes      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, indicator, day)
-- the row of the current day is rewritten by every batch: room for its updates to stay HOT
) WITH (fillfactor = 50);

-- The notifier keeps such values too, and reads the aggregator's tables through views.
CREATE OR REPLACE VIEW aggregator_read.history_reach AS
    SELECT campaign_id, indicator, day, writes FROM aggregator.history_reach;
GRANT SELECT ON aggregator_read.history_reach TO tiendo_notifier;
