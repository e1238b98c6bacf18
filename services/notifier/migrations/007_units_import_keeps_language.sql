-- The units import hands over four contact columns (006). It used to delete the unit's
-- rows of those channels and insert them again, which dropped the `language` a chief's
-- contact was given through the notifier's own API (`PUT /v1/contacts/{unit}`): every
-- re-import of the tree would have sent English readers Vietnamese again. Now a blank
-- column still removes that contact, and a filled one updates the address in place.
-- CREATE OR REPLACE keeps the function's owner and its grant to the aggregator.
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
$$;
