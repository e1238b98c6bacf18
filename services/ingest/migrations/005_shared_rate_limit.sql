-- The per-token rate limit shared by every ingest process (services/ingest/ratelimit.py):
-- one token bucket per token name, taken from by one upsert per request.
-- UNLOGGED: the upsert then waits for no WAL flush, and losing the buckets in a crash only
-- refills them. A low fillfactor leaves room on the page for HOT updates of the hot rows.
CREATE UNLOGGED TABLE ingest.rate_buckets (
    token       text PRIMARY KEY,
    level       double precision NOT NULL,  -- events in the bucket; below 0 is debt
    updated_at  timestamptz NOT NULL,
    admitted    boolean NOT NULL            -- the last request's decision, for RETURNING
) WITH (fillfactor = 50);

GRANT SELECT, INSERT, UPDATE, DELETE ON ingest.rate_buckets TO tiendo_ingest;
