-- Ingest's tables move to its own schema (issue 12). SET SCHEMA keeps the rows, indexes
-- and constraints, so a running deployment upgrades in place; `public.` names the old home
-- so that a database built from scratch (where earlier files created them there) and an
-- upgraded one end alike.
CREATE SCHEMA IF NOT EXISTS ingest;
ALTER TABLE IF EXISTS public.ingest_tokens SET SCHEMA ingest;

GRANT USAGE ON SCHEMA ingest TO tiendo_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ingest TO tiendo_ingest;
-- tables later migrations add (run by the same owner) are the service's to write too
ALTER DEFAULT PRIVILEGES IN SCHEMA ingest
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tiendo_ingest;
-- the units and indicators ingest checks events against are the aggregator's read views
ALTER ROLE tiendo_ingest SET search_path = public, ingest, aggregator_read;
