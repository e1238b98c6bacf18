-- Upstream systems' bearer tokens. Only a SHA-256 of the token is stored: a token is 256
-- random bits, so a fast hash is enough and lets every request be checked in one lookup.
CREATE TABLE ingest_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    token_sha256 bytea NOT NULL UNIQUE,
    -- unit subtrees and indicators the token may write; empty means all
    units       text[] NOT NULL DEFAULT '{}',
    indicators  text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
