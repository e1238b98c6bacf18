-- Issue 4: per-campaign rule policies, per-recipient notification groups (grouping, repeat,
-- escalation), silences, weekly briefing ranks, value samples for run rates, and a delivery
-- log with leases so that two replicas and a SIGKILL never create or lose a notification.

-- Partial overrides of the settings' defaults, per campaign (see docs/alerts.md).
CREATE TABLE alert_policies (
    campaign_id text PRIMARY KEY,
    config      jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT ''
);

-- One group per (campaign, recipient unit): the chief of `recipient` gets one message
-- listing every alert of the group. The row is the lock that serialises planning, so
-- replicas never both decide to send the same change or repeat slot.
CREATE TABLE alert_groups (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    text NOT NULL,
    recipient      text NOT NULL,
    -- messages planned so far (the sequence number in the dedup key)
    seq            integer NOT NULL DEFAULT 0,
    -- seq of the last change message: repeats are counted from it
    anchor_seq     integer NOT NULL DEFAULT 0,
    anchor_at      timestamptz,
    repeat_slot    integer NOT NULL DEFAULT 0,
    last_message_at timestamptz,
    UNIQUE (campaign_id, recipient)
);

CREATE TABLE alert_group_members (
    group_id    bigint NOT NULL REFERENCES alert_groups (id) ON DELETE CASCADE,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    -- 0: the unit's own chief; n: the chief n levels up (escalation)
    level       smallint NOT NULL,
    state       text NOT NULL CHECK (state IN ('firing', 'resolved')),
    -- since when this recipient should hear of the firing alert / of its resolution
    changed_at  timestamptz NOT NULL,
    -- told of it while firing (only then is a resolved notice owed)
    notified    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (group_id, alert_id)
);
CREATE INDEX alert_group_members_alert ON alert_group_members (alert_id);

CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- matchers: NULL matches everything; `unit` matches the unit and its whole subtree
    campaign_id text,
    unit        text,
    indicator   text,
    rule        text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expired_at  timestamptz,
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_active ON silences (ends_at) WHERE expired_at IS NULL;

-- The bottom N of a level at one weekly briefing, frozen at the first evaluation after the
-- briefing time (the first replica to store it wins; the others read it).
CREATE TABLE briefing_ranks (
    campaign_id text NOT NULL,
    slot        timestamptz NOT NULL,
    indicator   text NOT NULL,
    unit        text NOT NULL,
    rank        integer NOT NULL,
    of_units    integer NOT NULL,
    pct         double precision,
    PRIMARY KEY (campaign_id, slot, indicator, unit)
);

-- Value of each key as the feed reported it, one sample per key and 10 minutes: the
-- notifier's own history for the 7-day run rate behind `at_risk`.
CREATE TABLE progress_samples (
    campaign_id text NOT NULL,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    bucket      timestamptz NOT NULL,
    at          timestamptz NOT NULL,
    value       bigint NOT NULL,
    PRIMARY KEY (campaign_id, unit, indicator, bucket)
);

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('firing', 'resolved', 'repeat', 'escalation', 'digest'));
ALTER TABLE notifications
    ADD COLUMN group_id    bigint REFERENCES alert_groups (id) ON DELETE SET NULL,
    ADD COLUMN campaign_id text,
    ADD COLUMN subject     text NOT NULL DEFAULT '',
    ADD COLUMN language    text NOT NULL DEFAULT 'vi',
    -- a sender holds the row until lease_until (wall clock); a crashed sender's row is
    -- taken over after it, and re-sent with the same delivery id
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN claimed_by  text;
CREATE INDEX notifications_sending ON notifications (lease_until) WHERE status = 'sending';

-- Which alerts a (grouped) notification told of.
CREATE TABLE notification_alerts (
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    PRIMARY KEY (notification_id, alert_id)
);
CREATE INDEX notification_alerts_alert ON notification_alerts (alert_id);

-- Every delivery attempt, written before the send (so a crash mid-send leaves a trace) and
-- completed after it.
CREATE TABLE delivery_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    replica         text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    ok              boolean,
    error           text
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts (notification_id, attempt);

ALTER TABLE alerts ADD COLUMN escalated_at timestamptz;
