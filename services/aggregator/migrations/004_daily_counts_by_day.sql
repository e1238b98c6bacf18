-- The boards' "events today" and run-rate queries select by day across all units.
CREATE INDEX daily_counts_day ON daily_counts (day, campaign_id);
