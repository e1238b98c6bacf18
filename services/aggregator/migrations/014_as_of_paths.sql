-- The paths of `as_of` from the day rollups (tiendo/counting/as_of_days.py), measured on
-- bench.national (11,000 units, 1,000,000 events).
--
-- A large subtree reads the one day of events it needs for its indicators (the moment's
-- local day up to the moment) from this index alone: an index-only scan, no heap visit
-- per event (a small subtree keeps reading each of its units' through
-- events_unit_indicator_time). Counted events only: the others never count. The country's
-- day of one indicator: 0.8 ms instead of 240 ms of 11,000 per-unit probes.
CREATE INDEX IF NOT EXISTS events_counted_by_day
    ON aggregator.events (indicator, occurred_at) INCLUDE (unit, kind, value, event_id)
    WHERE counted;

-- A root's subtree by its lineage (`ancestors && roots`): a commune's is itself, not a
-- reading of every unit's lineage (a commune's as_of: 45 -> 5 ms).
CREATE INDEX IF NOT EXISTS units_ancestors ON aggregator.units USING gin (ancestors);

-- The closed versions of a tree (is any of them carried by shares?): none on most trees.
CREATE INDEX IF NOT EXISTS units_closed ON aggregator.units (valid_to)
    WHERE valid_to IS NOT NULL;
