-- Token rotation without downtime: the replaced token's hash is kept, and accepted, until
-- previous_valid_until (zero grace by default, so a leaked token dies at once).
ALTER TABLE ingest_tokens
    ADD COLUMN previous_sha256      bytea UNIQUE,
    ADD COLUMN previous_valid_until timestamptz,
    ADD COLUMN rotated_at           timestamptz,
    ADD CONSTRAINT ingest_tokens_previous_has_end
        CHECK ((previous_sha256 IS NULL) = (previous_valid_until IS NULL));
