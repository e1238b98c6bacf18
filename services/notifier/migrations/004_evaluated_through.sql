-- The moment of each campaign's latest full pass. A full pass judges every open alert of
-- the campaign, so an alert's last evaluation is the later of its own `last_evaluated_at`
-- (written when its state or its figures change, or a feed pass judges its key) and this:
-- rewriting every open alert on every pass only to move its stamp cost seconds on a
-- national tree.
CREATE TABLE alert_evaluations (
    campaign_id  text PRIMARY KEY,
    evaluated_at timestamptz NOT NULL
);
