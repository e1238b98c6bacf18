-- Units that change (issue 13, docs/units-over-time.md). A row of `units` is now one
-- *version* of a unit: what its official code meant over a period, with that period's name,
-- type, level and parent. A version never changes once a later one replaces it: a change
-- of name, parent or level, a merge or a split closes the old version (`valid_to`) and
-- opens a new one, and `unit_transfers` says where the old one's people went.
--
-- `code` stays the primary key and every table keeps naming units by it: it is the
-- version's *key*. The first version of an official code is keyed by the code itself, so a
-- tree that never changed looks as before; a later version that reuses a code is keyed
-- `<code>@<first local day>` (Phường Ba Đình, 00004 from 1 July 2025, is `00004@2025-07-01`
-- where Phường Trúc Bạch was loaded first as `00004`). `admin_code` is the code upstream
-- systems send; an event is attributed to the version its code meant at `occurred_at`.
ALTER TABLE aggregator.units DROP CONSTRAINT IF EXISTS units_code_check;
ALTER TABLE aggregator.units ADD CONSTRAINT units_code_check
    CHECK (code ~ '^[A-Za-z0-9_.-]{1,32}(@[0-9]{4}-[0-9]{2}-[0-9]{2})?$');
ALTER TABLE aggregator.units
    ADD COLUMN IF NOT EXISTS admin_code text,
    -- [valid_from, valid_to): the moments (local midnight of the cut-over day) this version
    -- is in force; -infinity: since before anything tiendo knows; NULL valid_to: still in force
    ADD COLUMN IF NOT EXISTS valid_from timestamptz NOT NULL DEFAULT '-infinity',
    ADD COLUMN IF NOT EXISTS valid_to timestamptz;
UPDATE aggregator.units SET admin_code = code WHERE admin_code IS NULL;
ALTER TABLE aggregator.units ALTER COLUMN admin_code SET NOT NULL;
-- a unit written without one is the first version of its code (every tree loaded before
-- versions existed, every test's world)
CREATE OR REPLACE FUNCTION aggregator.unit_admin_code() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.admin_code := coalesce(NEW.admin_code, NEW.code);
    RETURN NEW;
END $$;
CREATE TRIGGER units_admin_code BEFORE INSERT ON aggregator.units
    FOR EACH ROW EXECUTE FUNCTION aggregator.unit_admin_code();
ALTER TABLE aggregator.units ADD CONSTRAINT units_admin_code_check
    CHECK (admin_code ~ '^[A-Za-z0-9_.-]{1,32}$');
ALTER TABLE aggregator.units ADD CONSTRAINT units_period_check
    CHECK (valid_to IS NULL OR valid_to > valid_from);
-- the version of a code at a moment: attribution of every event
CREATE INDEX IF NOT EXISTS units_admin_code_period ON aggregator.units (admin_code, valid_from);

-- The crosswalk: where each closed version's people went at its cut-over. `whole`: all of
-- it into `new_unit` (one row); `part`: split over several rows, with `share` (their sum is
-- 1) when the operator declared them, NULL when nobody knows (history then stays with the
-- lowest unit above all successors, shown as "unallocated from split units"). A version
-- whose identity continues under a new name or parent has one `whole` row to its new
-- version.
CREATE TABLE IF NOT EXISTS aggregator.unit_transfers (
    old_unit text NOT NULL REFERENCES aggregator.units (code),
    new_unit text NOT NULL REFERENCES aggregator.units (code),
    transfer text NOT NULL CHECK (transfer IN ('whole', 'part')),
    share    numeric CHECK (share > 0 AND share <= 1),
    -- the cut-over: the old version's valid_to and the new one's valid_from
    at       timestamptz NOT NULL,
    PRIMARY KEY (old_unit, new_unit),
    CHECK (transfer = 'part' OR share IS NULL OR share = 1)
);
CREATE INDEX IF NOT EXISTS unit_transfers_new ON aggregator.unit_transfers (new_unit);

-- An event attributed to another key than the code it was sent with (a reused code's later
-- version, a retired code within the grace period): the code as sent. NULL: the same.
ALTER TABLE aggregator.events ADD COLUMN IF NOT EXISTS sent_unit text;

-- The moment whose tree a campaign's live counters are kept on (the tree in force at
-- min(now, deadline), at least its start); the aggregator recounts a campaign when a
-- cut-over passes it. NULL: not planned on a dated tree yet.
ALTER TABLE aggregator.campaigns ADD COLUMN IF NOT EXISTS tree_at timestamptz;

-- The readers see the versions: ingest attributes codes and scopes tokens, the notifier
-- names units and escalates in the tree in force.
CREATE OR REPLACE VIEW aggregator_read.unit_transfers AS
    SELECT old_unit, new_unit, transfer, share, at FROM aggregator.unit_transfers;
GRANT SELECT ON aggregator_read.unit_transfers TO tiendo_ingest, tiendo_notifier;

-- A retired code is still accepted for events that happen after its cut-over until this
-- moment (the grace period given when the tree was loaded), counted to its `whole`
-- successor; stored, so every service and every replay attributes alike.
ALTER TABLE aggregator.units ADD COLUMN IF NOT EXISTS grace_until timestamptz;
CREATE OR REPLACE VIEW aggregator_read.units AS
    SELECT code, name, level, parent_code, ancestors, admin_code, valid_from, valid_to,
           grace_until
    FROM aggregator.units;
