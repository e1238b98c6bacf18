-- `history_reach` by the hour of the earliest moment a transaction changed
-- (`tiendo.counting.reach`). The readers that keep run-rate start values sum whole days as
-- before. A briefing's stored ranking (the notifier's `briefing_ranks`) sums the days
-- before the briefing's and, of its day, the hours up to the briefing's: a report dated
-- after the briefing, on the same day, no longer makes every notifier pass of that day rank
-- the whole level again. Rows written before this count under hour 0 of their day, which
-- every reader of that day sums.
ALTER TABLE aggregator.history_reach ADD COLUMN IF NOT EXISTS hour smallint NOT NULL DEFAULT 0;
ALTER TABLE aggregator.history_reach DROP CONSTRAINT IF EXISTS history_reach_pkey;
ALTER TABLE aggregator.history_reach ADD PRIMARY KEY (campaign_id, indicator, day, hour);

CREATE OR REPLACE VIEW aggregator_read.history_reach AS
    SELECT campaign_id, indicator, day, writes, hour FROM aggregator.history_reach;
