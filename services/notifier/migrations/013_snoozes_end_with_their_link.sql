-- A snooze made through a link ends when the link is withdrawn (docs/alerts.md, "Withdrawn
-- links and snoozes"). A withdrawal says the person holding the link may no longer be the
-- unit's chief (a contact replaced, a link forwarded): a snooze they made must not hold
-- the chief's reminders back until it runs out (up to `snooze_max`, 3 days by default).
-- Acknowledgements and explanations stay: they are records of what was said, not a hold
-- on what comes next. The snooze row stays too, its end moved to the withdrawal and the
-- end asked for kept in `asked_ends_at`; `snoozes.link_id` (010) names the link.
--
-- Done by a trigger on the link's row: every way a link is withdrawn writes `revoked_at`
-- once (`POST /v1/links/revoke`, a contact change through the notifier's API, the page
-- that finds a link sent to a former contact, and the units import inside
-- `notifier.hand_over_unit_contacts`, which runs for the aggregator), so the rule holds on
-- every path, in the withdrawal's transaction, without each path stating it again.
ALTER TABLE notifier.snoozes
    ADD COLUMN asked_ends_at timestamptz,
    -- ended at its start: withdrawn at the moment it was made, it never held anything
    ADD CONSTRAINT snoozes_ends_after_start CHECK (
        ends_at > starts_at OR (ends_at = starts_at AND asked_ends_at IS NOT NULL)),
    ADD CONSTRAINT snoozes_ended_early CHECK (asked_ends_at IS NULL OR asked_ends_at > ends_at);

-- 010's `ends_at > starts_at`, which the check above replaces (named by PostgreSQL: found
-- by what it says)
DO $$
DECLARE
    named text;
BEGIN
    SELECT conname INTO STRICT named FROM pg_constraint
    WHERE conrelid = 'notifier.snoozes'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) = 'CHECK ((ends_at > starts_at))';
    EXECUTE format('ALTER TABLE notifier.snoozes DROP CONSTRAINT %I', named);
END $$;

-- the snoozes of one link, which its withdrawal ends (a units import may withdraw many)
CREATE INDEX snoozes_link ON notifier.snoozes (link_id, ends_at);

-- Ends, as of the link's withdrawal, its snoozes still to end then, and audits them as
-- `snoozes.end` (who withdrew the link, its unit; why, its message, each snooze's alert,
-- start and the end asked for). Runs with the rights of whoever withdraws: the notifier's
-- role, or the owner inside `hand_over_unit_contacts`.
CREATE FUNCTION notifier.end_snoozes_of_withdrawn_link() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WITH ended AS (
        UPDATE notifier.snoozes s
        SET asked_ends_at = s.ends_at, ends_at = greatest(s.starts_at, NEW.revoked_at)
        WHERE s.link_id = NEW.id AND s.ends_at > NEW.revoked_at
        RETURNING s.id, s.alert_id, s.starts_at, s.asked_ends_at
    )
    INSERT INTO public.audit_log (actor, action, subject, details)
    SELECT NEW.revoked_by, 'snoozes.end', NEW.recipient,
           jsonb_build_object(
               'because', NEW.revoked_because,
               'message', NEW.message_key,
               'ended_at', NEW.revoked_at,
               'snoozes', jsonb_agg(jsonb_build_object('alert_id', e.alert_id,
                                                       'starts_at', e.starts_at,
                                                       'asked_until', e.asked_ends_at)
                                    ORDER BY e.alert_id, e.id))
    FROM ended e
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER snoozes_end_with_their_link
AFTER UPDATE OF revoked_at ON notifier.links
FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
EXECUTE FUNCTION notifier.end_snoozes_of_withdrawn_link();
