-- The counted event of each (indicator, subject): the earliest by (occurred_at, event_id).
-- A later event for the same citizen is kept with counted = false; if an earlier one
-- arrives late, the count moves to it (contract §5).
CREATE TABLE subjects (
    indicator   text NOT NULL,
    subject     text NOT NULL,
    event_id    text NOT NULL,
    occurred_at timestamptz NOT NULL,
    unit        text NOT NULL,
    PRIMARY KEY (indicator, subject)
);
