-- Who changed what, when: admin actions of every service (contract §7).
CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text NOT NULL,
    details  jsonb NOT NULL DEFAULT '{}'
);
