-- The aggregator's tables move to its own schema (issue 12); what the other services read
-- of them is a view in `aggregator_read` under the table's own name, over only the columns
-- they use, granted read-only to the readers that need it. SET SCHEMA keeps the rows,
-- indexes and constraints, so a running deployment upgrades in place; `public.` names the
-- old home so that a database built from scratch and an upgraded one end alike.
CREATE SCHEMA IF NOT EXISTS aggregator;
ALTER TABLE IF EXISTS public.units SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.indicators SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.campaigns SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.targets SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.events SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.daily_counts SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.progress SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.consumer_offsets SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.dead_letters SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.subjects SET SCHEMA aggregator;
ALTER TABLE IF EXISTS public.board_figures SET SCHEMA aggregator;

GRANT USAGE ON SCHEMA aggregator TO tiendo_aggregator;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA aggregator
    TO tiendo_aggregator;
-- tables later migrations add (run by the same owner) are the service's to write too
ALTER DEFAULT PRIVILEGES IN SCHEMA aggregator
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO tiendo_aggregator;
ALTER ROLE tiendo_aggregator SET search_path = public, aggregator;

CREATE SCHEMA IF NOT EXISTS aggregator_read;
GRANT USAGE ON SCHEMA aggregator_read TO tiendo_ingest, tiendo_notifier;

-- the tree: ingest checks units and scopes tokens by ancestors; the notifier names units
-- and escalates up the tree
CREATE VIEW aggregator_read.units AS
    SELECT code, name, level, parent_code, ancestors FROM aggregator.units;
CREATE VIEW aggregator_read.indicators AS
    SELECT code, name, name_en FROM aggregator.indicators;
GRANT SELECT ON aggregator_read.units, aggregator_read.indicators
    TO tiendo_ingest, tiendo_notifier;

-- what the board (tiendo.board) judges and the notifier's briefings are versioned by
CREATE VIEW aggregator_read.campaigns AS
    SELECT id, name, starts_at, deadline, timezone, indicators, behind_threshold,
           stale_after, milestones, updated_at
    FROM aggregator.campaigns;
CREATE VIEW aggregator_read.targets AS
    SELECT campaign_id, unit, indicator, target, baseline, deadline FROM aggregator.targets;
CREATE VIEW aggregator_read.progress AS
    SELECT campaign_id, unit, indicator, value, baseline, target, deadline, last_event_at
    FROM aggregator.progress;
CREATE VIEW aggregator_read.events AS
    SELECT event_id, unit, indicator, kind, value, occurred_at, counted FROM aggregator.events;
CREATE VIEW aggregator_read.daily_counts AS
    SELECT campaign_id, unit, indicator, day, increments, events FROM aggregator.daily_counts;
GRANT SELECT ON aggregator_read.campaigns, aggregator_read.targets, aggregator_read.progress,
    aggregator_read.events, aggregator_read.daily_counts
    TO tiendo_notifier;

-- The board's stored figures (aggregator migration 006) are the board's to read as well;
-- whatever columns the board reads of them.
DO $$
BEGIN
    IF to_regclass('aggregator.board_figures') IS NOT NULL THEN
        CREATE VIEW aggregator_read.board_figures AS SELECT * FROM aggregator.board_figures;
        GRANT SELECT ON aggregator_read.board_figures TO tiendo_notifier;
    END IF;
END $$;
