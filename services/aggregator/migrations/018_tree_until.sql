-- How long a campaign's live counters stay on the tree they were planned on
-- (`tiendo.board.campaign.Campaign.counters_on_tree`): until the first boundary after its
-- `tree_at`. Past it, until the aggregator moves them (`services.aggregator.cutover`),
-- every reader of live figures reads them otherwise (docs/units-over-time.md "The moment
-- of a cut-over"). NULL: no boundary after it.
CREATE OR REPLACE FUNCTION aggregator_read.tree_until(at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(valid_from) FROM aggregator_read.units WHERE valid_from > at),
        (SELECT min(valid_to) FROM aggregator_read.units WHERE valid_to > at))
$$;

-- Read with every campaign, by every service: the first boundary after a moment, from the
-- index, not a reading of every unit's period.
CREATE INDEX IF NOT EXISTS units_valid_from ON aggregator.units (valid_from);

GRANT EXECUTE ON FUNCTION aggregator_read.tree_until(timestamptz)
    TO tiendo_aggregator, tiendo_notifier;
