-- Jobs, the quota ledger and quota settings.
--
-- Money rules live in the schema so that no code path can skip them:
--   * inserting a job reserves its images (ledger 'reserve');
--   * a job entering a final state settles it: 'charge' = delivered, 'refund' = the rest;
--   * UNIQUE(job_id, kind) + INSERT OR IGNORE: a second settle changes nothing;
--   * the ledger is append-only; per-day totals are derived from it by trigger,
--     so quota checks read at most ~31 small rows instead of scanning the ledger.
-- Quota scope (guild_id in these tables): the server id, or 'direct' outside servers.

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    requester TEXT NOT NULL,            -- Requester as JSON
    provider TEXT NOT NULL,
    request TEXT NOT NULL,              -- GenerationRequest as JSON
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'submitting', 'running', 'delivering', 'done', 'failed', 'cancelled')),
    task_id TEXT,
    progress INTEGER,
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0 AND delivered <= reserved),
    result_urls TEXT NOT NULL DEFAULT '[]',   -- JSON list
    error_kind TEXT,
    error_code TEXT,
    error_message TEXT,
    thread_id TEXT,
    status_message_id TEXT,
    delivery TEXT NOT NULL DEFAULT '{}',      -- JSON object
    parent_job_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    submitted_at REAL,
    finished_at REAL,
    deadline_at REAL,
    admitted_at REAL NOT NULL               -- when admit() reserved: the period it counts in
);
CREATE INDEX jobs_state ON jobs (state, created_at);
CREATE INDEX jobs_task ON jobs (provider, task_id);
CREATE INDEX jobs_user_created ON jobs (platform, user_id, created_at);
-- Covers the running/queued counts of admit() without reading rows.
CREATE INDEX jobs_user_state ON jobs (user_id, state, platform);

CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('reserve', 'charge', 'refund')),
    images INTEGER NOT NULL CHECK (images >= 0),
    period_ts REAL NOT NULL,            -- the job's admitted_at: settles count in its period
    created_at REAL NOT NULL,
    UNIQUE (job_id, kind)
);

-- used = reserved - refunded (in-flight jobs count), charged = delivered; per UTC day.
CREATE TABLE usage_daily (
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day INTEGER NOT NULL,               -- UTC midnight, epoch seconds
    used INTEGER NOT NULL DEFAULT 0,
    charged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, user_id, day)
) WITHOUT ROWID;

CREATE TABLE guild_daily (
    guild_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, day)
) WITHOUT ROWID;

CREATE TRIGGER jobs_reserve AFTER INSERT ON jobs
BEGIN
    INSERT INTO ledger (job_id, guild_id, user_id, kind, images, period_ts, created_at)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'reserve', NEW.reserved, NEW.admitted_at,
            NEW.admitted_at);
END;

CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
    AND OLD.state NOT IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO ledger (job_id, guild_id, user_id, kind, images, period_ts, created_at)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'charge', NEW.delivered, NEW.admitted_at,
            NEW.updated_at),
           (NEW.id, NEW.scope_id, NEW.user_id, 'refund', NEW.reserved - NEW.delivered,
            NEW.admitted_at, NEW.updated_at);
END;

CREATE TRIGGER ledger_totals AFTER INSERT ON ledger
BEGIN
    INSERT INTO usage_daily (guild_id, user_id, day, used, charged)
    VALUES (NEW.guild_id, NEW.user_id, CAST(NEW.period_ts / 86400 AS INTEGER) * 86400,
            CASE NEW.kind WHEN 'reserve' THEN NEW.images WHEN 'refund' THEN -NEW.images
                ELSE 0 END,
            CASE NEW.kind WHEN 'charge' THEN NEW.images ELSE 0 END)
    ON CONFLICT (guild_id, user_id, day) DO UPDATE
        SET used = used + excluded.used, charged = charged + excluded.charged;
    INSERT INTO guild_daily (guild_id, day, used)
    VALUES (NEW.guild_id, CAST(NEW.period_ts / 86400 AS INTEGER) * 86400,
            CASE NEW.kind WHEN 'reserve' THEN NEW.images WHEN 'refund' THEN -NEW.images
                ELSE 0 END)
    ON CONFLICT (guild_id, day) DO UPDATE SET used = used + excluded.used;
END;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- Limits: scope 'server' (subject_id ''), 'user' or 'role'. period NULL: the server's.
CREATE TABLE quota_limits (
    guild_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('server', 'user', 'role')),
    subject_id TEXT NOT NULL,
    images_limit INTEGER NOT NULL CHECK (images_limit >= 0),
    period TEXT CHECK (period IN ('day', 'week', 'month')),
    updated_at REAL NOT NULL,
    PRIMARY KEY (guild_id, scope, subject_id)
) WITHOUT ROWID;

-- Extra images for the period containing granted_at.
CREATE TABLE grants (
    id INTEGER PRIMARY KEY,
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    images INTEGER NOT NULL CHECK (images > 0),
    granted_by TEXT NOT NULL,
    granted_at REAL NOT NULL
);
CREATE INDEX grants_user ON grants (guild_id, user_id, granted_at);

CREATE TABLE blocks (
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    blocked_at REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE server_budgets (
    guild_id TEXT PRIMARY KEY,
    monthly_images INTEGER NOT NULL CHECK (monthly_images >= 0),
    updated_at REAL NOT NULL
);

CREATE TABLE guild_config (
    guild_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,               -- GuildConfig as JSON
    updated_at REAL NOT NULL
);
