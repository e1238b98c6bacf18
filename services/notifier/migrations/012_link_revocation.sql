-- A chief's link can be withdrawn (docs/briefing.md, "Withdrawn links"). The link is the
-- only authority to acknowledge, snooze or explain as the unit's chief, and it lives up to
-- 60 days: a chief replaced (a new address on a channel) or a link forwarded must not keep
-- that authority until it expires. What was done through a link before stays as stored.
--
-- `revoked_because`: `contact_changed`, an address the link's message was sent to is no
-- longer the unit's contact on that channel (set by the contact change, or by the page
-- that found it); `admin`, `POST /v1/links/revoke`. `revoked_by`: the administrator (the
-- audit log's actor), `units import` or `notifier` (the page found it first).
-- `revoked_note`: the administrator's reason, never shown to the link's holder.
ALTER TABLE notifier.links
    ADD COLUMN revoked_at      timestamptz,
    ADD COLUMN revoked_because text CHECK (revoked_because IN ('contact_changed', 'admin')),
    ADD COLUMN revoked_by      text,
    ADD COLUMN revoked_note    text NOT NULL DEFAULT '' CHECK (length(revoked_note) <= 500),
    ADD CONSTRAINT links_revoked_whole CHECK (
        (revoked_at IS NULL) = (revoked_because IS NULL)
        AND (revoked_at IS NULL) = (revoked_by IS NULL));

-- A unit's live links, which a contact change or an administrator revokes.
CREATE INDEX links_unrevoked ON notifier.links (recipient, expires_at) WHERE revoked_at IS NULL;

-- The rows of one message: a row's key is `<message id>/<channel>` (messages.Outgoing), and
-- a link names its message by that id (`links.message_key`).
CREATE INDEX notifications_message
    ON notifier.notifications ((left(dedup_key, length(dedup_key) - length(channel) - 1)));

-- Whether the message of a link of `of_unit` (`of_message`: its message id) was sent to an
-- address that is no longer the unit's contact on that channel. "Sent to": an attempt was
-- started there (it may have arrived even if it timed out), to the address that attempt
-- wrote down (before migration 011 attempts kept none: the row's). Every attempt sends to
-- the contact of that moment, so a message still waiting when the contact changed goes to
-- the new address, and its link stays good. The operators' copy (`fallback`) carries no
-- link. One rule for the contact change that revokes and the page that refuses.
CREATE FUNCTION notifier.link_reached_former_contact(of_unit text, of_message text)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
SELECT EXISTS (
    SELECT FROM notifier.notifications n
    JOIN notifier.delivery_attempts d ON d.notification_id = n.id
    WHERE left(n.dedup_key, length(n.dedup_key) - length(n.channel) - 1) = of_message
      AND n.recipient = of_unit AND NOT n.fallback
      AND NOT EXISTS (SELECT FROM notifier.contacts c
                      WHERE c.unit = of_unit AND c.channel = n.channel
                        AND c.address = coalesce(d.address, n.address)))
$$;

-- Revoke, as of `revoked_on`, the live links of `of_units` whose message reached an
-- address no longer the unit's (`link_reached_former_contact`), by `actor`; the links
-- revoked. Expired links are left alone: they are refused already, and a national units
-- import would otherwise check every link ever sent.
CREATE FUNCTION notifier.revoke_links_to_former_contacts(
    of_units text[], revoked_on timestamptz, actor text
) RETURNS SETOF notifier.links
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
UPDATE notifier.links l
SET revoked_at = revoked_on, revoked_because = 'contact_changed', revoked_by = actor
WHERE l.recipient = ANY (of_units) AND l.revoked_at IS NULL AND l.expires_at > revoked_on
  AND notifier.link_reached_former_contact(l.recipient, l.message_key)
RETURNING l.*
$$;

REVOKE ALL ON FUNCTION notifier.link_reached_former_contact(text, text),
                       notifier.revoke_links_to_former_contacts(text[], timestamptz, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION notifier.link_reached_former_contact(text, text),
                          notifier.revoke_links_to_former_contacts(text[], timestamptz, text)
    TO tiendo_notifier;

-- The units import (006, 007) changes contacts too: as 007, then the links sent to an
-- address it replaced or removed are revoked in the same transaction, and audited as the
-- notifier's API audits them (`links.revoke`). The function runs for the aggregator, which
-- does not pass who imports: the actor is `units import`, and the same transaction's
-- `units.upsert` row names the person. CREATE OR REPLACE keeps the owner and the grant.
CREATE OR REPLACE FUNCTION notifier.hand_over_unit_contacts(units jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DELETE FROM notifier.contacts c
USING jsonb_to_recordset(units)
      AS g (code text, chief_email text, chief_phone text, chief_webhook text, chief_chat text)
CROSS JOIN LATERAL (VALUES ('email', g.chief_email), ('sms', g.chief_phone),
                           ('webhook', g.chief_webhook), ('chat', g.chief_chat))
      AS x (channel, address)
WHERE c.unit = g.code AND c.channel = x.channel AND coalesce(x.address, '') = '';

INSERT INTO notifier.contacts (unit, channel, address)
SELECT g.code, x.channel, x.address
FROM jsonb_to_recordset(units)
     AS g (code text, chief_email text, chief_phone text, chief_webhook text, chief_chat text)
CROSS JOIN LATERAL (VALUES ('email', g.chief_email), ('sms', g.chief_phone),
                           ('webhook', g.chief_webhook), ('chat', g.chief_chat))
     AS x (channel, address)
WHERE coalesce(x.address, '') <> ''
ON CONFLICT (unit, channel) DO UPDATE SET address = EXCLUDED.address, updated_at = now();

DELETE FROM notifier.chiefs c
USING jsonb_to_recordset(units) AS g (code text, chief_name text)
WHERE c.unit = g.code AND coalesce(g.chief_name, '') = '';

INSERT INTO notifier.chiefs (unit, name)
SELECT g.code, g.chief_name FROM jsonb_to_recordset(units) AS g (code text, chief_name text)
WHERE coalesce(g.chief_name, '') <> ''
ON CONFLICT (unit) DO UPDATE SET name = EXCLUDED.name, updated_at = now();

WITH revoked AS (
    SELECT * FROM notifier.revoke_links_to_former_contacts(
        ARRAY(SELECT g.code FROM jsonb_to_recordset(units) AS g (code text)), now(),
        'units import')
)
INSERT INTO public.audit_log (actor, action, subject, details)
SELECT 'units import', 'links.revoke', r.recipient,
       jsonb_build_object('because', 'contact_changed', 'revoked', count(*),
                          'messages', jsonb_agg(r.message_key ORDER BY r.issued_at, r.id))
FROM revoked r
GROUP BY r.recipient;
$$;
