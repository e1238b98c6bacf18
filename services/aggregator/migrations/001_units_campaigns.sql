-- The organisation tree, the indicator catalogue, campaigns and targets: the reference data
-- the aggregator owns and ingest reads to validate events.

CREATE TABLE units (
    code          text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_.-]{1,32}$'),
    name          text NOT NULL,
    type          text NOT NULL DEFAULT '',
    level         smallint NOT NULL CHECK (level BETWEEN 1 AND 6),
    parent_code   text REFERENCES units (code) DEFERRABLE INITIALLY DEFERRED,
    -- root first; kept by the admin upsert so rollups need no recursive query
    ancestors     text[] NOT NULL DEFAULT '{}',
    chief_name    text,
    chief_email   text,
    chief_phone   text,
    chief_webhook text,
    chief_chat    text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((level = 1) = (parent_code IS NULL))
);
CREATE INDEX units_parent ON units (parent_code);
CREATE INDEX units_ancestors ON units USING gin (ancestors);
CREATE INDEX units_level ON units (level, code);

CREATE TABLE indicators (
    code    text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{1,48}$'),
    name    text NOT NULL,
    name_en text NOT NULL DEFAULT ''
);
INSERT INTO indicators (code, name, name_en) VALUES
    ('cccd_collected', 'Thu nhận hồ sơ CCCD', 'CCCD applications collected'),
    ('cccd_returned', 'Trả thẻ CCCD', 'CCCD cards handed to citizens'),
    ('eid_collected', 'Thu nhận hồ sơ định danh điện tử', 'VNeID applications collected'),
    ('eid_approved', 'Duyệt hồ sơ định danh điện tử', 'VNeID applications approved'),
    ('eid_activated_l1', 'Kích hoạt tài khoản định danh mức 1', 'VNeID accounts activated, level 1'),
    ('eid_activated_l2', 'Kích hoạt tài khoản định danh mức 2', 'VNeID accounts activated, level 2'),
    ('household_digitized', 'Số hoá hồ sơ hộ khẩu', 'household-registry records digitised'),
    ('pid_verified', 'Xác thực số định danh cá nhân', 'personal ID numbers verified');

CREATE TABLE campaigns (
    id               text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name             text NOT NULL,
    starts_at        timestamptz NOT NULL,
    deadline         timestamptz NOT NULL,
    timezone         text NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
    indicators       text[] NOT NULL,
    behind_threshold double precision NOT NULL DEFAULT 0.9,
    stale_after      interval NOT NULL DEFAULT '12 hours',
    -- [{"at": RFC 3339, "fraction": 0..1}], empty for the linear plan
    milestones       jsonb NOT NULL DEFAULT '[]',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (deadline > starts_at)
);

CREATE TABLE targets (
    campaign_id text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    unit        text NOT NULL REFERENCES units (code),
    indicator   text NOT NULL REFERENCES indicators (code),
    -- NULL: the sum of the children's targets
    target      bigint CHECK (target >= 0),
    baseline    bigint NOT NULL DEFAULT 0 CHECK (baseline >= 0),
    deadline    timestamptz,
    PRIMARY KEY (campaign_id, unit, indicator)
);
