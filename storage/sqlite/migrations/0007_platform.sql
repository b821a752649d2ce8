-- The platform in the data (issue 14): a Discord user and a Slack user (or server and
-- workspace) with the same id never share a quota, ledger, override or config row.
--
-- 1. Every quota table gets `platform`, first in its primary key and in the indexes
-- that started with guild_id. Existing rows are Discord's, except the 'direct' scope:
-- Discord commands are server-only, so only the console (Requester.platform "console",
-- no server) ever wrote there; those rows become the console's, so an existing console
-- install keeps its usage and settings.
-- SQLite cannot change a primary key in place: those tables are rebuilt (renamed, made
-- again, copied, dropped) with the totals trigger dropped first, so nothing is derived
-- twice and no trigger follows the rename. The ledger and grants only gain a column.
DROP TRIGGER ledger_totals;

DROP TRIGGER ledger_no_update;

ALTER TABLE ledger ADD COLUMN platform TEXT NOT NULL DEFAULT 'discord';

UPDATE ledger SET platform = 'console' WHERE guild_id = 'direct';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

DROP INDEX ledger_charges;

CREATE INDEX ledger_charges ON ledger (platform, guild_id, period_ts) WHERE kind = 'charge';

ALTER TABLE grants ADD COLUMN platform TEXT NOT NULL DEFAULT 'discord';

UPDATE grants SET platform = 'console' WHERE guild_id = 'direct';

DROP INDEX grants_user;

CREATE INDEX grants_user ON grants (platform, guild_id, user_id, granted_at);

-- The rebuilt tables take `platform` as their first column (first in the key): a WITHOUT
-- ROWID table whose key columns come after other columns trips SQLite 3.40's
-- PRAGMA quick_check (false "NULL value" reports), which `wanbot doctor` runs.
ALTER TABLE usage_daily RENAME TO usage_daily_0006;

CREATE TABLE usage_daily (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day INTEGER NOT NULL,               -- UTC midnight, epoch seconds
    used INTEGER NOT NULL DEFAULT 0,
    charged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, guild_id, user_id, day)
) WITHOUT ROWID;

INSERT INTO usage_daily (platform, guild_id, user_id, day, used, charged)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, user_id, day, used, charged
FROM usage_daily_0006;

DROP TABLE usage_daily_0006;

ALTER TABLE guild_daily RENAME TO guild_daily_0006;

CREATE TABLE guild_daily (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, guild_id, day)
) WITHOUT ROWID;

INSERT INTO guild_daily (platform, guild_id, day, used)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END, guild_id, day, used
FROM guild_daily_0006;

DROP TABLE guild_daily_0006;

ALTER TABLE quota_limits RENAME TO quota_limits_0006;

CREATE TABLE quota_limits (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('server', 'user', 'role')),
    subject_id TEXT NOT NULL,
    images_limit INTEGER NOT NULL CHECK (images_limit >= 0),
    period TEXT CHECK (period IN ('day', 'week', 'month')),
    updated_at REAL NOT NULL,
    PRIMARY KEY (platform, guild_id, scope, subject_id)
) WITHOUT ROWID;

INSERT INTO quota_limits
    (platform, guild_id, scope, subject_id, images_limit, period, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, scope, subject_id, images_limit, period, updated_at
FROM quota_limits_0006;

DROP TABLE quota_limits_0006;

ALTER TABLE blocks RENAME TO blocks_0006;

CREATE TABLE blocks (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    blocked_at REAL NOT NULL,
    PRIMARY KEY (platform, guild_id, user_id)
) WITHOUT ROWID;

INSERT INTO blocks (platform, guild_id, user_id, reason, blocked_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, user_id, reason, blocked_at
FROM blocks_0006;

DROP TABLE blocks_0006;

ALTER TABLE server_budgets RENAME TO server_budgets_0006;

CREATE TABLE server_budgets (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    monthly_images INTEGER NOT NULL CHECK (monthly_images >= 0),
    updated_at REAL NOT NULL,
    PRIMARY KEY (platform, guild_id)
);

INSERT INTO server_budgets (platform, guild_id, monthly_images, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, monthly_images, updated_at
FROM server_budgets_0006;

DROP TABLE server_budgets_0006;

-- The config JSON keeps its guild_id; the store takes the key from the row.
ALTER TABLE guild_config RENAME TO guild_config_0006;

CREATE TABLE guild_config (
    platform TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT NOT NULL,
    config TEXT NOT NULL,               -- GuildConfig as JSON
    updated_at REAL NOT NULL,
    PRIMARY KEY (platform, guild_id)
);

INSERT INTO guild_config (platform, guild_id, config, updated_at)
SELECT CASE guild_id WHEN 'direct' THEN 'console' ELSE 'discord' END,
       guild_id, config, updated_at
FROM guild_config_0006;

DROP TABLE guild_config_0006;

-- 2. The money triggers carry the platform: the ledger rows take the job's (the
-- requester's, jobs.platform), the daily totals the ledger row's.
DROP TRIGGER jobs_reserve;

CREATE TRIGGER jobs_reserve AFTER INSERT ON jobs
BEGIN
    INSERT INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, platform)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'reserve', NEW.reserved, NEW.admitted_at,
            NEW.admitted_at, NEW.platform);
END;

DROP TRIGGER jobs_settle;

CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
    AND OLD.state NOT IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd,
         platform)
    SELECT NEW.id, NEW.scope_id, NEW.user_id, settle.kind, settle.images, NEW.admitted_at,
           CAST(NEW.updated_at AS INTEGER)
               - (NEW.updated_at < CAST(NEW.updated_at AS INTEGER)),   -- floor
           settle.price, NEW.platform
    FROM (SELECT 'charge' AS kind, NEW.delivered AS images, NEW.unit_price_usd AS price
          UNION ALL
          SELECT 'refund', NEW.reserved - NEW.delivered, NULL) AS settle
    WHERE settle.kind = 'charge'
        OR (settle.images > 0 AND NOT EXISTS
            (SELECT 1 FROM ledger WHERE job_id = NEW.id AND kind = 'charge'))
    ORDER BY settle.kind;               -- 'charge' before 'refund', as before
END;

CREATE TRIGGER ledger_totals AFTER INSERT ON ledger
BEGIN
    INSERT INTO usage_daily (platform, guild_id, user_id, day, used, charged)
    VALUES (NEW.platform, NEW.guild_id, NEW.user_id,
            CAST(NEW.period_ts / 86400 AS INTEGER) * 86400,
            CASE NEW.kind WHEN 'reserve' THEN NEW.images WHEN 'refund' THEN -NEW.images
                ELSE 0 END,
            CASE NEW.kind WHEN 'charge' THEN NEW.images ELSE 0 END)
    ON CONFLICT (platform, guild_id, user_id, day) DO UPDATE
        SET used = used + excluded.used, charged = charged + excluded.charged;
    INSERT INTO guild_daily (platform, guild_id, day, used)
    VALUES (NEW.platform, NEW.guild_id, CAST(NEW.period_ts / 86400 AS INTEGER) * 86400,
            CASE NEW.kind WHEN 'reserve' THEN NEW.images WHEN 'refund' THEN -NEW.images
                ELSE 0 END)
    ON CONFLICT (platform, guild_id, day) DO UPDATE SET used = used + excluded.used;
END;

-- 3. The callback token a provider's callback must carry gets its own column
-- (Job.callback_token); tokens stored in the delivery JSON move there.
ALTER TABLE jobs ADD COLUMN callback_token TEXT;

UPDATE jobs
SET callback_token = json_extract(delivery, '$.callback_token'),
    delivery = json_remove(delivery, '$.callback_token')
WHERE json_type(delivery, '$.callback_token') IS NOT NULL;   -- present, even null
