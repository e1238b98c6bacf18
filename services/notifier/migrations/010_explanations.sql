-- Giải trình (issue 14): chiefs acknowledge, snooze and explain from a personal link in
-- their alert message; the briefing pack shows what they wrote. Written by the chief's link
-- only, so these rows are audited here (who: the link's chief, when, which link, from where)
-- and not in public.audit_log: the notifier runs a full pass on every audit row, and a
-- chief's click is not a reference change.

-- Per campaign: the causes a chief picks from, the longest snooze, how long a link lives.
-- A campaign without a row uses the defaults in services/notifier/explanations.py.
CREATE TABLE notifier.explanation_policies (
    campaign_id        text PRIMARY KEY,
    causes             jsonb NOT NULL CHECK (jsonb_typeof(causes) = 'array'),
    snooze_max_seconds integer NOT NULL CHECK (snooze_max_seconds > 0),
    link_ttl_seconds   integer NOT NULL CHECK (link_ttl_seconds > 0),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A link sent in one message: one chief (the recipient unit), one campaign, the alerts the
-- message listed. Its id is in the signed token; the token alone carries no authority
-- once the row is gone or expired.
CREATE TABLE notifier.links (
    id           text PRIMARY KEY,
    campaign_id  text NOT NULL,
    recipient    text NOT NULL,
    alert_ids    bigint[] NOT NULL,
    message_key  text NOT NULL DEFAULT '',
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > issued_at)
);

-- One-time form tokens: every form a link page renders carries one; a POST is taken once,
-- so a replayed (or double-submitted) form changes nothing.
CREATE TABLE notifier.link_actions (
    nonce      text PRIMARY KEY,
    link_id    text NOT NULL REFERENCES notifier.links (id),
    issued_at  timestamptz NOT NULL,
    used_at    timestamptz,
    action     text CHECK (action IN ('acknowledge', 'snooze', 'explain'))
);

-- "Đã nhận": stops the repeats of that alert (not its escalation) until its next change.
CREATE TABLE notifier.acknowledgements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES notifier.alerts (id),
    link_id         text NOT NULL REFERENCES notifier.links (id),
    acknowledged_at timestamptz NOT NULL,
    remote          text NOT NULL DEFAULT ''
);
CREATE INDEX acknowledgements_alert ON notifier.acknowledgements (alert_id, acknowledged_at DESC);

-- "Hoãn": no repeat of that alert to its chief before ends_at (bounded by the policy).
CREATE TABLE notifier.snoozes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES notifier.alerts (id),
    link_id    text NOT NULL REFERENCES notifier.links (id),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    remote     text NOT NULL DEFAULT ''
);
CREATE INDEX snoozes_alert ON notifier.snoozes (alert_id, ends_at DESC);

-- Explanations are versioned: an amendment is a new version, never an update, and the
-- service's role may not update or delete them (the grant below), so nothing a chief
-- wrote is ever lost. The figures when it was written are kept to check a commitment.
CREATE TABLE notifier.explanations (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    text NOT NULL,
    unit           text NOT NULL,
    indicator      text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    cause          text NOT NULL,
    detail         text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000),
    committed_date date,
    committed_rate double precision CHECK (committed_rate > 0),
    value_then     bigint NOT NULL,
    link_id        text NOT NULL REFERENCES notifier.links (id),
    submitted_at   timestamptz NOT NULL,
    remote         text NOT NULL DEFAULT '',
    CHECK (committed_date IS NOT NULL OR committed_rate IS NOT NULL),
    UNIQUE (campaign_id, unit, indicator, version)
);
REVOKE UPDATE, DELETE ON notifier.explanations FROM tiendo_notifier;

-- A commitment checked once its date (or, for a rate, the first briefing after it) passed.
CREATE TABLE notifier.commitment_checks (
    explanation_id bigint PRIMARY KEY REFERENCES notifier.explanations (id),
    due_at         timestamptz NOT NULL,
    checked_at     timestamptz NOT NULL,
    met            boolean NOT NULL,
    value          bigint NOT NULL,
    wanted         double precision NOT NULL
);

-- Checked commitments are told to the unit's chief as messages of their own kind. The
-- kinds are extended, not restated, so a kind another migration added stays allowed.
DO $$
DECLARE
    def text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
    WHERE conname = 'notifications_kind_check' AND conrelid = 'notifier.notifications'::regclass;
    IF def IS NOT NULL AND position('commitment' IN def) = 0 THEN
        ALTER TABLE notifier.notifications DROP CONSTRAINT notifications_kind_check;
        EXECUTE 'ALTER TABLE notifier.notifications ADD CONSTRAINT notifications_kind_check '
            || replace(def, 'ARRAY[', 'ARRAY[''commitment''::text, ');
    END IF;
END $$;
