-- The notifier's own state: the latest progress of every (campaign, unit, indicator) from
-- the unit-progress feed, alert instances, and the notification log (the outbox that makes
-- every notification exactly-once per alert state change).

CREATE TABLE unit_states (
    campaign_id      text NOT NULL,
    unit             text NOT NULL,
    indicator        text NOT NULL,
    unit_name        text NOT NULL DEFAULT '',
    level            smallint NOT NULL,
    parent           text,
    value            bigint NOT NULL,
    baseline         bigint NOT NULL,
    target           bigint NOT NULL,
    starts_at        timestamptz NOT NULL,
    deadline         timestamptz NOT NULL,
    last_event_at    timestamptz,
    computed_at      timestamptz NOT NULL,
    behind_threshold double precision NOT NULL,
    stale_after      interval NOT NULL,
    timezone         text NOT NULL,
    PRIMARY KEY (campaign_id, unit, indicator)
);

CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      text NOT NULL,
    unit             text NOT NULL,
    indicator        text NOT NULL,
    rule             text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    -- when the condition began to hold, when it fired, when it cleared
    since            timestamptz NOT NULL,
    fired_at         timestamptz,
    resolved_at      timestamptz,
    last_evaluated_at timestamptz NOT NULL,
    escalation_level smallint NOT NULL DEFAULT 0,
    details          jsonb NOT NULL DEFAULT '{}'
);
-- at most one open (pending or firing) instance per key and rule
CREATE UNIQUE INDEX alerts_open ON alerts (campaign_id, unit, indicator, rule)
    WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, campaign_id);

CREATE TABLE notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- one notification per alert state change: the guard against sending twice
    dedup_key    text NOT NULL UNIQUE,
    alert_id     bigint REFERENCES alerts (id),
    kind         text NOT NULL CHECK (kind IN ('firing', 'resolved', 'repeat', 'escalation')),
    recipient    text NOT NULL,
    channel      text NOT NULL,
    address      text NOT NULL,
    body         jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
