-- The change of each hour of a day, for the tree's first levels (the country and its
-- provinces; a city and its communes): `as_of` of their large subtrees reads the rollups
-- up to the moment's hour and that hour's events, instead of half a day of events
-- (`tiendo.counting.rollups`, `tiendo.counting.as_of_days`). `hours[h + 1]` is the change
-- of hour h of the local day, counted from its start; null on deeper units' days.
--
-- A deployment upgraded in place has no hours on the days rolled up before: they stay
-- null (the apply adds none to a null) and `as_of` reads those days whole, as before,
-- until the next recount of the campaign (any admin change, a tree change, a rebuild)
-- writes them.
ALTER TABLE aggregator.subtree_days ADD COLUMN IF NOT EXISTS hours bigint[];

-- The notifier's briefing reads `as_of` too, through its view (a view gains columns at its
-- end only).
CREATE OR REPLACE VIEW aggregator_read.subtree_days AS
    SELECT campaign_id, unit, indicator, day, change, increments, events, hours
    FROM aggregator.subtree_days;
