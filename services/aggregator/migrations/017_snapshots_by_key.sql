-- Each key's snapshots, for the apply's day rollups of late reports
-- (`tiendo.counting.rollups`: the snapshot that covers a late increment, the snapshots a
-- late key's walk starts and ends at). By the key's index these were found by reading
-- every increment between, a heap visit each to tell its kind; snapshots are about one
-- event in a hundred, so this index costs the insert of the rest nothing.
CREATE INDEX IF NOT EXISTS events_snapshots
    ON aggregator.events (unit, indicator, occurred_at, event_id)
    WHERE kind = 'snapshot';
