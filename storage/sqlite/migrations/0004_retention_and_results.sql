-- Two storage changes (issue 17, point 5).
--
-- 1. Finished jobs are pruned after JOB_RETENTION_DAYS (storage/sqlite/prune.py); the ledger is
-- kept for ever, so its rows must outlive their job: the ledger is rebuilt without the
-- foreign key to jobs (SQLite cannot drop a constraint in place). Columns, checks,
-- UNIQUE (job_id, kind) and the ledger's own triggers are unchanged.
-- The rows are copied before the totals trigger exists, so usage totals are untouched.

CREATE TABLE ledger_copy AS SELECT * FROM ledger;

DROP TABLE ledger;

CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,               -- the job may since have been pruned
    guild_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('reserve', 'charge', 'refund')),
    images INTEGER NOT NULL CHECK (images >= 0),
    period_ts REAL NOT NULL,
    created_at REAL NOT NULL,
    unit_price_usd REAL CHECK (unit_price_usd >= 0),
    UNIQUE (job_id, kind)
);

INSERT INTO ledger (id, job_id, guild_id, user_id, kind, images, period_ts, created_at,
                    unit_price_usd)
SELECT id, job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd
FROM ledger_copy ORDER BY id;

DROP TABLE ledger_copy;

-- 0003's index for the monthly spend report, now holding only the rows that report
-- reads (its queries say kind = 'charge'): a third of the entries.
CREATE INDEX ledger_charges ON ledger (guild_id, period_ts) WHERE kind = 'charge';

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

-- 2. Result URLs live in a side table while a job is being delivered, not in its row:
-- four 300-character URLs made each row grow by ~1.2 kB and shrink again at DONE,
-- leaving the jobs table's pages about half empty (bench/storage.py). jobs.result_urls
-- stays as a column (always '[]' from here on) so the row layout is unchanged. The
-- store reads COALESCE(job_results.urls, jobs.result_urls). A final job keeps no URLs.
CREATE TABLE job_results (
    job_id TEXT PRIMARY KEY,
    urls TEXT NOT NULL                  -- JSON list
) WITHOUT ROWID;

INSERT INTO job_results (job_id, urls)
SELECT id, result_urls FROM jobs
WHERE result_urls <> '[]' AND state NOT IN ('done', 'failed', 'cancelled');

UPDATE jobs SET result_urls = '[]' WHERE result_urls <> '[]';

CREATE TRIGGER job_results_final AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
BEGIN
    DELETE FROM job_results WHERE job_id = NEW.id;
END;

CREATE TRIGGER job_results_pruned AFTER DELETE ON jobs
BEGIN
    DELETE FROM job_results WHERE job_id = OLD.id;
END;
