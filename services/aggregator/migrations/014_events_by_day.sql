-- `as_of` of a large subtree (tiendo/counting/as_of_days.py) reads the one day of events
-- it needs for its indicators, the moment's local day up to the moment, from this index
-- alone (an index-only scan: no heap visit per event); a small subtree keeps reading each
-- of its units' through events_unit_indicator_time. Counted events only: the others never
-- count. Measured on 1,000,000 events (bench.national): the country's day of one
-- indicator in 0.8 ms instead of 240 ms of 11,000 per-unit probes.
CREATE INDEX IF NOT EXISTS events_counted_by_day
    ON aggregator.events (indicator, occurred_at) INCLUDE (unit, kind, value, event_id)
    WHERE counted;
