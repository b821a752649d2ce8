-- The platform in the data: storage/sqlite/migrations/0007_platform.sql in PostgreSQL
-- (see there). Every quota table gets `platform`, first in its primary key and in the
-- indexes that started with guild_id; existing rows are Discord's, except the 'direct'
-- scope, which only the console ever wrote (Discord commands are server-only).
-- The ledger's append-only trigger is set aside for the one UPDATE that labels its
-- existing rows.

-- 1. The columns, the keys and the indexes.
ALTER TABLE ledger ADD COLUMN platform TEXT NOT NULL DEFAULT 'discord';

ALTER TABLE ledger DISABLE TRIGGER ledger_no_update;

UPDATE ledger SET platform = 'console' WHERE guild_id = 'direct';

ALTER TABLE ledger ENABLE TRIGGER ledger_no_update;

DROP INDEX ledger_charges;

CREATE INDEX ledger_charges ON ledger (platform, guild_id, period_ts) WHERE kind = 'charge';

ALTER TABLE grants ADD COLUMN platform TEXT NOT NULL DEFAULT 'discord';

UPDATE grants SET platform = 'console' WHERE guild_id = 'direct';

DROP INDEX grants_user;

CREATE INDEX grants_user ON grants (platform, guild_id, user_id, granted_at);

-- The tables whose key changes are made again with `platform` first, as in SQLite (the
-- schemas match column by column): the old one renamed (its key's index too, whose name
-- the new key takes), copied, dropped.
ALTER TABLE usage_daily RENAME TO usage_daily_0006;
ALTER INDEX usage_daily_pkey RENAME TO usage_daily_0006_pkey;

CREATE TABLE usage_daily (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,                -- UTC midnight, epoch seconds
    used INTEGER NOT NULL DEFAULT 0,
    charged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, guild_id, user_id, day)
);

INSERT INTO usage_daily (platform, guild_id, user_id, day, used, charged)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, user_id, day, used, charged
FROM usage_daily_0006;

DROP TABLE usage_daily_0006;

ALTER TABLE guild_daily RENAME TO guild_daily_0006;
ALTER INDEX guild_daily_pkey RENAME TO guild_daily_0006_pkey;

CREATE TABLE guild_daily (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, guild_id, day)
);

INSERT INTO guild_daily (platform, guild_id, day, used)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END, guild_id, day, used
FROM guild_daily_0006;

DROP TABLE guild_daily_0006;

ALTER TABLE quota_limits RENAME TO quota_limits_0006;
ALTER INDEX quota_limits_pkey RENAME TO quota_limits_0006_pkey;

CREATE TABLE quota_limits (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('server', 'user', 'role')),
    subject_id TEXT NOT NULL,
    images_limit INTEGER NOT NULL CHECK (images_limit >= 0),
    period TEXT CHECK (period IN ('day', 'week', 'month')),
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, guild_id, scope, subject_id)
);

INSERT INTO quota_limits
    (platform, guild_id, scope, subject_id, images_limit, period, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, scope, subject_id, images_limit, period, updated_at
FROM quota_limits_0006;

DROP TABLE quota_limits_0006;

ALTER TABLE blocks RENAME TO blocks_0006;
ALTER INDEX blocks_pkey RENAME TO blocks_0006_pkey;

CREATE TABLE blocks (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    blocked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, guild_id, user_id)
);

INSERT INTO blocks (platform, guild_id, user_id, reason, blocked_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, user_id, reason, blocked_at
FROM blocks_0006;

DROP TABLE blocks_0006;

ALTER TABLE server_budgets RENAME TO server_budgets_0006;
ALTER INDEX server_budgets_pkey RENAME TO server_budgets_0006_pkey;

CREATE TABLE server_budgets (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    monthly_images INTEGER NOT NULL CHECK (monthly_images >= 0),
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, guild_id)
);

INSERT INTO server_budgets (platform, guild_id, monthly_images, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, monthly_images, updated_at
FROM server_budgets_0006;

DROP TABLE server_budgets_0006;

ALTER TABLE guild_config RENAME TO guild_config_0006;
ALTER INDEX guild_config_pkey RENAME TO guild_config_0006_pkey;

CREATE TABLE guild_config (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    config TEXT NOT NULL,               -- GuildConfig as JSON
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, guild_id)
);

INSERT INTO guild_config (platform, guild_id, config, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, config, updated_at
FROM guild_config_0006;

DROP TABLE guild_config_0006;

-- 2. The money triggers carry the platform: the ledger rows take the job's (the
-- requester's, jobs.platform), the daily totals the ledger row's.
CREATE OR REPLACE FUNCTION jobs_reserve() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, platform)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'reserve', NEW.reserved, NEW.admitted_at,
            NEW.admitted_at, NEW.platform);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION jobs_settle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd,
         platform)
    SELECT NEW.id, NEW.scope_id, NEW.user_id, settle.kind, settle.images, NEW.admitted_at,
           floor(NEW.updated_at), settle.price, NEW.platform
    FROM (VALUES ('charge', NEW.delivered, NEW.unit_price_usd),
                 ('refund', NEW.reserved - NEW.delivered, NULL::double precision))
        AS settle (kind, images, price)
    WHERE settle.kind = 'charge'
        OR (settle.images > 0 AND NOT EXISTS
            (SELECT 1 FROM ledger WHERE job_id = NEW.id AND kind = 'charge'))
    ORDER BY settle.kind                -- 'charge' before 'refund', as before
    ON CONFLICT (job_id, kind) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_totals() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    day_start BIGINT := floor(NEW.period_ts / 86400)::BIGINT * 86400;
    used_delta INTEGER := CASE NEW.kind WHEN 'reserve' THEN NEW.images
                                        WHEN 'refund' THEN -NEW.images ELSE 0 END;
BEGIN
    INSERT INTO usage_daily AS u (platform, guild_id, user_id, day, used, charged)
    VALUES (NEW.platform, NEW.guild_id, NEW.user_id, day_start, used_delta,
            CASE NEW.kind WHEN 'charge' THEN NEW.images ELSE 0 END)
    ON CONFLICT (platform, guild_id, user_id, day) DO UPDATE
        SET used = u.used + excluded.used, charged = u.charged + excluded.charged;
    INSERT INTO guild_daily AS g (platform, guild_id, day, used)
    VALUES (NEW.platform, NEW.guild_id, day_start, used_delta)
    ON CONFLICT (platform, guild_id, day) DO UPDATE SET used = g.used + excluded.used;
    RETURN NULL;
END;
$$;

-- 3. The callback token gets its own column (Job.callback_token); tokens stored in the
-- delivery JSON move there.
ALTER TABLE jobs ADD COLUMN callback_token TEXT;

UPDATE jobs
SET callback_token = delivery::jsonb ->> 'callback_token',
    delivery = (delivery::jsonb - 'callback_token')::text
WHERE delivery::jsonb ? 'callback_token';
