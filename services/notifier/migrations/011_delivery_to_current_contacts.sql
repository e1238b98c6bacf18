-- Delivery to the recipient's contact as it is at each attempt, retries out of the
-- delivery slots, and failed messages sent again (docs/alerts.md, "Exactly once").
--
-- `address` stays the address the row was queued for, then the last one an attempt used;
-- each attempt now records the address it sent to. `fallback`: the row is the operators'
-- copy (TIENDO_NOTIFIER_WEBHOOK_URL standing in for a chief without a webhook of their
-- own), sent to that setting's URL at each attempt, never to a chief's contact: its body
-- carries nothing that is the chief's alone (the personal link).
ALTER TABLE notifier.notifications
    ADD COLUMN fallback boolean NOT NULL DEFAULT false,
    -- when the row was marked failed (`tiendo notifier redrive --since`)
    ADD COLUMN failed_at timestamptz,
    -- the attempts made before the last redrive: each redrive gives the row the full
    -- number of attempts again, while attempt numbers keep counting
    ADD COLUMN attempts_before integer NOT NULL DEFAULT 0;

ALTER TABLE notifier.delivery_attempts ADD COLUMN address text;

-- Rows queued before: a webhook row of a recipient with no webhook contact of their own
-- went to the fallback webhook (a chief's changed webhook still has a contact row).
UPDATE notifier.notifications n SET fallback = true
WHERE n.channel = 'webhook'
  AND NOT EXISTS (SELECT 1 FROM notifier.contacts c
                  WHERE c.unit = n.recipient AND c.channel = 'webhook');

UPDATE notifier.notifications n
SET failed_at = coalesce((SELECT max(coalesce(d.finished_at, d.started_at))
                          FROM notifier.delivery_attempts d WHERE d.notification_id = n.id),
                         n.created_at)
WHERE n.status = 'failed';

CREATE INDEX notifications_failed ON notifier.notifications (failed_at) WHERE status = 'failed';
