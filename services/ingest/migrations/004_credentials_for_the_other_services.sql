-- The other services must tell an upstream's token from a made-up one, to answer a wrong
-- role with 403 rather than 401 (docs/access.md). They see only what identifies a token —
-- its name and hash, while it works — never its scope, and never the table itself.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE VIEW auth.ingest_credentials AS
SELECT name, token_sha256 AS digest, NULL::timestamptz AS valid_until
FROM ingest.ingest_tokens WHERE revoked_at IS NULL
UNION ALL
SELECT name, previous_sha256, previous_valid_until
FROM ingest.ingest_tokens
WHERE revoked_at IS NULL AND previous_sha256 IS NOT NULL AND previous_valid_until > now();

-- ingest reads it too: its check of the other roles loads every credential at once
GRANT SELECT ON auth.ingest_credentials TO tiendo_ingest, tiendo_aggregator, tiendo_notifier;
