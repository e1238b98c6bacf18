-- Chiefs' contacts belong to the notifier (issue 12): its migration 006 copies these
-- columns into its `contacts` and drops them. Here they go only when empty (a database
-- built from scratch), where there is nothing to hand over; otherwise they wait for the
-- notifier's copy, whichever service is upgraded first.
DO $$
DECLARE
    filled bigint;
BEGIN
    IF EXISTS (
        SELECT FROM pg_attribute
        WHERE attrelid = 'aggregator.units'::regclass AND attname = 'chief_email'
          AND NOT attisdropped
    ) THEN
        EXECUTE 'SELECT count(*) FROM aggregator.units WHERE num_nonnulls(chief_name, '
                'chief_email, chief_phone, chief_webhook, chief_chat) > 0'
            INTO filled;
        IF filled = 0 THEN
            ALTER TABLE aggregator.units DROP COLUMN chief_name, DROP COLUMN chief_email,
                DROP COLUMN chief_phone, DROP COLUMN chief_webhook, DROP COLUMN chief_chat;
        END IF;
    END IF;
END $$;
