-- The notifier's tables move to its own schema (issue 12); it reads the aggregator's data
-- only through the `aggregator_read` views. SET SCHEMA keeps the rows, indexes and
-- constraints, so a running deployment upgrades in place; `public.` names the old home so
-- that a database built from scratch and an upgraded one end alike.
CREATE SCHEMA IF NOT EXISTS notifier;
ALTER TABLE IF EXISTS public.alerts SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.notifications SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.alert_policies SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.alert_groups SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.alert_group_members SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.silences SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.briefing_ranks SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.notification_alerts SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.delivery_attempts SET SCHEMA notifier;
ALTER TABLE IF EXISTS public.alert_evaluations SET SCHEMA notifier;

GRANT USAGE ON SCHEMA notifier TO tiendo_notifier;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA notifier TO tiendo_notifier;
-- tables later migrations add (run by the same owner) are the service's to write too
ALTER DEFAULT PRIVILEGES IN SCHEMA notifier
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tiendo_notifier;
ALTER ROLE tiendo_notifier SET search_path = public, notifier, aggregator_read;
