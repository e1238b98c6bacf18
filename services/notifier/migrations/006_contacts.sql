-- Chiefs' contacts belong to the notifier (issue 12): one row per unit and channel, so a
-- new channel (Zalo OA, an SMS gateway) is a class in channels.py and rows here, not a
-- column in another service's table.
CREATE TABLE notifier.contacts (
    unit       text NOT NULL,
    channel    text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]{0,31}$'),
    address    text NOT NULL CHECK (address <> ''),
    -- the chief's language on this channel; NULL: the campaign policy's
    language   text CHECK (language IN ('vi', 'en')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit, channel)
);

-- The chief's name, for the greeting: a chief with no contact of their own is still told
-- through the operators' fallback webhook.
CREATE TABLE notifier.chiefs (
    unit       text PRIMARY KEY,
    name       text NOT NULL CHECK (name <> ''),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON notifier.contacts, notifier.chiefs TO tiendo_notifier;

-- The units import (the aggregator's `PUT /v1/units` and `tiendo aggregator import units`)
-- carries contact columns; the aggregator hands them over through this function, which
-- runs with the notifier's rights (SECURITY DEFINER): the aggregator may call it but never
-- reads or writes the notifier's tables. `units` is the JSON array of the import's rows
-- ({code, chief_name, chief_email, chief_phone, chief_webhook, chief_chat}); for each unit
-- it replaces the four channels the import has columns for (a blank column removes that
-- contact) and the chief's name. Other channels are left as they are.
CREATE FUNCTION notifier.hand_over_unit_contacts(units jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DELETE FROM notifier.contacts c
USING jsonb_to_recordset(units) AS g (code text)
WHERE c.unit = g.code AND c.channel IN ('email', 'sms', 'webhook', 'chat');

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
REVOKE ALL ON FUNCTION notifier.hand_over_unit_contacts(jsonb) FROM PUBLIC;
GRANT USAGE ON SCHEMA notifier TO tiendo_aggregator;
GRANT EXECUTE ON FUNCTION notifier.hand_over_unit_contacts(jsonb) TO tiendo_aggregator;

-- The contacts so far are columns of the aggregator's units: copied here, then dropped, in
-- this one transaction (whichever service migrates first, the aggregator's table may still
-- be in `public`).
DO $$
DECLARE
    units regclass := coalesce(to_regclass('aggregator.units'), to_regclass('public.units'));
BEGIN
    IF units IS NOT NULL AND EXISTS (
        SELECT FROM pg_attribute
        WHERE attrelid = units AND attname = 'chief_email' AND NOT attisdropped
    ) THEN
        EXECUTE format(
            'SELECT notifier.hand_over_unit_contacts(coalesce(jsonb_agg(jsonb_build_object('
            '''code'', code, ''chief_name'', chief_name, ''chief_email'', chief_email, '
            '''chief_phone'', chief_phone, ''chief_webhook'', chief_webhook, '
            '''chief_chat'', chief_chat)), ''[]'')) FROM %s',
            units);
        EXECUTE format(
            'ALTER TABLE %s DROP COLUMN chief_name, DROP COLUMN chief_email, '
            'DROP COLUMN chief_phone, DROP COLUMN chief_webhook, DROP COLUMN chief_chat',
            units);
    END IF;
END $$;
