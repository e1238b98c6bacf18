-- One role per service (issue 12): each writes only its own schema and reads another's
-- data only through the read views granted to it. Roles are cluster-wide, so they are
-- created only when missing (a second database on the same server shares them). They can
-- log in but have no password: with password authentication nobody logs in as one until
-- an operator sets it (a migration never holds a secret); each logs in with its service's
-- search path (set by that service's migration).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tiendo_ingest', 'tiendo_aggregator', 'tiendo_notifier'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END $$;

-- `public` keeps the two tables of the shared library: the migration ledger, which
-- `migrate` creates and finds by its bare name before any migration runs (moved, it would
-- be created again empty and every migration re-applied), and the audit log, which every
-- service writes. Only the notifier reads it (its last id versions the reference data).
GRANT INSERT ON audit_log TO tiendo_ingest, tiendo_aggregator, tiendo_notifier;
GRANT SELECT ON audit_log TO tiendo_notifier;
-- a service that logs in as its role checks at start that its migrations are applied (the
-- owner applies them: only it may create roles and move tables)
GRANT SELECT ON schema_migrations TO tiendo_ingest, tiendo_aggregator, tiendo_notifier;

-- Owner and tool connections (psql, `tiendo check`, the demo, the tests) see every
-- service's tables by their bare names; `public` comes first so that an unqualified
-- CREATE lands where `migrate` looks for its ledger.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = public, ingest, aggregator, notifier',
                   current_database());
END $$;
