-- Webhook signing secrets (issue 16): one per receiving endpoint (a webhook URL), so a
-- receiver can verify what tiendo sends it but cannot forge what tiendo sends to others.
-- Standard Webhooks signatures are HMACs: the notifier needs each secret itself to sign,
-- so it is kept as issued (`whsec_…`), in the notifier's schema, which only the notifier's
-- role and the owner can read; no API returns it and the CLI shows it once, at creation.
--
-- Rotation with overlap: `rotate` adds a new current secret and gives the old one a
-- `retires_at`; until then messages carry a signature by each, so receivers can switch
-- secrets at their own pace. A secret whose `retires_at` has passed signs nothing.
CREATE TABLE notifier.webhook_secrets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint   text NOT NULL CHECK (endpoint <> ''),
    secret     text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    retires_at timestamptz
);
-- one current secret per endpoint; any number still in their overlap
CREATE UNIQUE INDEX webhook_secrets_current ON notifier.webhook_secrets (endpoint)
    WHERE retires_at IS NULL;
CREATE INDEX webhook_secrets_endpoint ON notifier.webhook_secrets (endpoint, id);
GRANT SELECT, INSERT, UPDATE, DELETE ON notifier.webhook_secrets TO tiendo_notifier;
