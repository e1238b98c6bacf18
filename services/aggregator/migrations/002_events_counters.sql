-- Every accepted event, kept forever (dedup by event_id, history, as_of, rebuild), and the
-- live counters derived from them.

CREATE TABLE events (
    event_id     text PRIMARY KEY,
    unit         text NOT NULL,
    indicator    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('increment', 'snapshot')),
    value        bigint NOT NULL,
    occurred_at  timestamptz NOT NULL,
    subject      text,
    -- false for an increment whose subject was already counted by an earlier event
    counted      boolean NOT NULL DEFAULT true,
    received_at  timestamptz,
    source       text NOT NULL DEFAULT '',
    kafka_partition integer,
    kafka_offset bigint,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_unit_indicator_time ON events (unit, indicator, occurred_at);

-- Own counted increments per unit and local day of the campaign (charts, run rates).
CREATE TABLE daily_counts (
    campaign_id text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    day         date NOT NULL,
    increments  bigint NOT NULL DEFAULT 0,
    events      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, unit, indicator, day)
);

-- Live state per (campaign, unit, indicator). A unit's own value is
-- coalesce(snap_value, own_baseline) + incr_after; `value` is the rolled-up subtree total.
CREATE TABLE progress (
    campaign_id       text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    unit              text NOT NULL,
    indicator         text NOT NULL,
    own_baseline      bigint NOT NULL DEFAULT 0,
    snap_at           timestamptz,
    snap_event_id     text,
    snap_value        bigint,
    incr_after        bigint NOT NULL DEFAULT 0,
    own_last_event_at timestamptz,
    value             bigint NOT NULL DEFAULT 0,
    baseline          bigint NOT NULL DEFAULT 0,
    target            bigint NOT NULL DEFAULT 0,
    deadline          timestamptz,
    last_event_at     timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, unit, indicator)
);

-- The aggregator's Kafka position, written in the same transaction as the counters: the
-- database, not the broker, is the source of truth of what has been applied.
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

CREATE TABLE dead_letters (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    kafka_offset bigint NOT NULL,
    event_id     text,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at  timestamptz,
    PRIMARY KEY (topic, partition, kafka_offset)
);
