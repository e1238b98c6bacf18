-- A rebuild in progress (SPEC §5: "a recount in progress is shown as such, never as a wrong
-- number"). The rebuild resets the counters and the history in one transaction and then
-- replays the topic batch by batch, each committed: in between, the counters hold part of
-- the events. The reset writes this row with the offsets it replays from and up to; the
-- recount is in progress while the group's stored next offset of any partition is short of
-- its end (`tiendo.board.repository.recount_in_progress`). The rebuild deletes the row
-- when it ends; one that dies midway leaves it, and the aggregators, which carry on from
-- the offsets it stored, end the recount themselves by catching up.
CREATE TABLE IF NOT EXISTS aggregator.recounts (
    only_one      boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    started_at    timestamptz NOT NULL,
    actor         text NOT NULL,
    group_id      text NOT NULL,
    topic         text NOT NULL,
    partitions    integer[] NOT NULL,
    from_offsets  bigint[] NOT NULL,
    until_offsets bigint[] NOT NULL,
    CHECK (cardinality(partitions) = cardinality(from_offsets)
           AND cardinality(partitions) = cardinality(until_offsets))
);

-- The notifier judges nothing while it lasts: it reads the row and the offsets it is
-- measured against, under the tables' own names (as migration 007's views).
CREATE OR REPLACE VIEW aggregator_read.recounts AS
    SELECT started_at, actor, group_id, topic, partitions, from_offsets, until_offsets
    FROM aggregator.recounts;
CREATE OR REPLACE VIEW aggregator_read.consumer_offsets AS
    SELECT group_id, topic, partition, next_offset FROM aggregator.consumer_offsets;
GRANT SELECT ON aggregator_read.recounts, aggregator_read.consumer_offsets
    TO tiendo_notifier, tiendo_aggregator;
