-- `history_reach` by the hour too (`tiendo.counting.reach`): `hours[h + 1]`, how many of the
-- day's `writes` changed hour h of it first (`rules.local_hour`), as the day rollups lay
-- out their hours. The readers that keep run-rate start values sum whole days as before. A
-- briefing's stored ranking (the notifier's `briefing_ranks`) sums the days up to the
-- briefing's less that day's writes of the hours after the briefing's: a report dated later
-- that day no longer makes every notifier pass of that day rank the whole level again.
-- A day's writes that no hour holds (written before this, or by an aggregator not yet
-- upgraded: the row's key is unchanged, so both write it) count as of the day's start,
-- which every reader of that day sums.
ALTER TABLE aggregator.history_reach ADD COLUMN IF NOT EXISTS hours bigint[];

CREATE OR REPLACE VIEW aggregator_read.history_reach AS
    SELECT campaign_id, indicator, day, writes, hours FROM aggregator.history_reach;
