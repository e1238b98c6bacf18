-- Events consumed while their `occurred_at` was still ahead of the aggregator's clock
-- (ingest accepts up to 5 minutes ahead, contract §4.1): held here, committed with the
-- batch's offsets, and applied once their moment has come (services/aggregator/ahead.py).
-- Counted at once, they were live before `as_of` now could count them. Rows as
-- `batch_in` stages them, with the record's bytes for a dead letter.
CREATE TABLE IF NOT EXISTS aggregator.events_ahead (
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    event_id        text NOT NULL,
    unit            text NOT NULL,
    indicator       text NOT NULL,
    kind            text NOT NULL,
    value           bigint NOT NULL,
    occurred_at     timestamptz NOT NULL,
    subject         text,
    received_at     timestamptz,
    source          text,
    content_hash    bytea,
    payload         bytea NOT NULL,
    held_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS events_ahead_due ON aggregator.events_ahead (occurred_at);
