-- Named identities of people and systems that read and administer tiendo (issue 16):
-- each has its own secret, bound to a role and a unit scope. Upstream systems' ingest tokens
-- stay in ingest's own schema (ingest.ingest_tokens): its hot path checks them.
-- A schema of its own, not public: every service reads it, none owns it; only the
-- owner's connections (the `tiendo identity` CLI, the aggregator's admin API) write it.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.identities (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    role                 text NOT NULL CHECK (role IN ('reader', 'admin', 'auditor')),
    -- unit subtrees it may read; empty means every unit (admins and auditors always)
    units                text[] NOT NULL DEFAULT '{}',
    -- only a SHA-256: a secret is 256 random bits, so a fast hash suffices
    token_sha256         bytea NOT NULL UNIQUE,
    -- the secret a rotation replaced, accepted until previous_valid_until
    previous_sha256      bytea UNIQUE,
    previous_valid_until timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    rotated_at           timestamptz,
    revoked_at           timestamptz,
    CONSTRAINT identities_previous_has_end
        CHECK ((previous_sha256 IS NULL) = (previous_valid_until IS NULL)),
    CONSTRAINT identities_wide_roles_see_everything
        CHECK (role = 'reader' OR units = '{}')
);

-- Every service verifies the credentials it is shown; the aggregator's admin API manages
-- them (as its role), so it may write them too.
GRANT USAGE ON SCHEMA auth TO tiendo_ingest, tiendo_aggregator, tiendo_notifier;
GRANT SELECT ON auth.identities TO tiendo_ingest, tiendo_aggregator, tiendo_notifier;
GRANT INSERT, UPDATE ON auth.identities TO tiendo_aggregator;
-- the auditor's reads go through the notifier, which already reads the audit log
