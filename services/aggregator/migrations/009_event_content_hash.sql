-- Idempotency that keeps data (issue 16): each stored event keeps the hash of its content
-- (tiendo.counting.content), so a redelivery of its event_id is told apart as an exact
-- repeat (counted in `duplicates`) or a conflict (dead-lettered with reason `conflict`)
-- without ingest looking anything up. Events stored before this have no hash: a
-- redelivery of one of them is taken for a repeat, as before.
ALTER TABLE aggregator.events
    ADD COLUMN IF NOT EXISTS content_hash bytea,
    ADD COLUMN IF NOT EXISTS duplicates integer NOT NULL DEFAULT 0;

-- What a sender may ask about its dead letters: whose unit and indicator they are (its
-- token's scope), found by event_id.
ALTER TABLE aggregator.dead_letters
    ADD COLUMN IF NOT EXISTS unit text,
    ADD COLUMN IF NOT EXISTS indicator text;
CREATE INDEX IF NOT EXISTS dead_letters_event_id ON aggregator.dead_letters (event_id)
    WHERE event_id IS NOT NULL;

-- `GET /v1/events/{event_id}` on ingest reads these, and nothing of the payloads.
CREATE VIEW aggregator_read.event_receipts AS
    SELECT event_id, unit, indicator, counted, duplicates, applied_at FROM aggregator.events;
CREATE VIEW aggregator_read.event_dead_letters AS
    SELECT event_id, unit, indicator, reason, created_at, redriven_at
    FROM aggregator.dead_letters
    WHERE event_id IS NOT NULL;
GRANT SELECT ON aggregator_read.event_receipts, aggregator_read.event_dead_letters
    TO tiendo_ingest;
