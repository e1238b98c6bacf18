-- The notifier judges the board's figures (tiendo.board, over the aggregator's tables)
-- instead of keeping its own copy of them from the feed: its copy and its value samples
-- could only ever be a partial, later view of the same state.
DROP TABLE IF EXISTS unit_states;
DROP TABLE IF EXISTS progress_samples;

-- "Was this alert resolved by an evaluation after mine?": an evaluation of an earlier
-- moment (another replica's, slower) must not re-open what a later one closed.
CREATE INDEX alerts_key_resolved ON alerts (campaign_id, unit, indicator, rule, resolved_at)
    WHERE state = 'resolved';

-- A briefing's ranking is the leaderboard as of the briefing, computed from history: a
-- late report from before the briefing, or a changed target, changes it. The version of
-- the history and reference data it was computed from is kept with it (on the marker row)
-- so that a pass recomputes it only when they moved.
ALTER TABLE briefing_ranks ADD COLUMN history_version text;
