-- Fewer bytes per job (issue 17, point 5: at most 1 kB per job, bench/storage.py).
-- The store also writes its JSON columns compactly from here on and stamps
-- jobs.admitted_at in whole seconds (storage/job_rows.py, storage/sqlite/jobs.py); rows
-- written before are left as they are and read the same.
--
-- 1. The settle writes no 'refund' row when nothing is refunded: a zero refund
-- changes no total (usage_daily.used = reserved - refunded) and was a third of the
-- ledger. The 'charge' row is still written at every settle, zero or not: it marks
-- the job settled. Both rows come from one INSERT ... SELECT whose SELECT reads the
-- ledger before anything is inserted, and a refund is written only while the job has
-- no charge, so a second settle still changes nothing, also after a first one that
-- wrote no refund (UNIQUE (job_id, kind) + OR IGNORE, as before).
-- Ledger times are whole seconds (floor): quota periods start on whole seconds, so
-- the day, week and month a row counts in are unchanged, and SQLite stores a whole
-- number in 4 bytes instead of 8. period_ts stays the job's admitted_at.
DROP TRIGGER jobs_settle;

CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
    AND OLD.state NOT IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd)
    SELECT NEW.id, NEW.scope_id, NEW.user_id, settle.kind, settle.images, NEW.admitted_at,
           CAST(NEW.updated_at AS INTEGER)
               - (NEW.updated_at < CAST(NEW.updated_at AS INTEGER)),   -- floor
           settle.price
    FROM (SELECT 'charge' AS kind, NEW.delivered AS images, NEW.unit_price_usd AS price
          UNION ALL
          SELECT 'refund', NEW.reserved - NEW.delivered, NULL) AS settle
    WHERE settle.kind = 'charge'
        OR (settle.images > 0 AND NOT EXISTS
            (SELECT 1 FROM ledger WHERE job_id = NEW.id AND kind = 'charge'))
    ORDER BY settle.kind;               -- 'charge' before 'refund', as before
END;

-- 2. Indexes that only ever serve active jobs hold only those, not every job kept
-- for JOB_RETENTION_DAYS. Their queries name the same state list, so SQLite uses them:
--   * jobs_user_state: the running/queued counts of admit() (storage/sqlite/quota_facts.py)
--     and the in-flight sum of /usage (storage/sqlite/quotas.py);
--   * jobs_task: find_by_task(), which finds the job a provider task is running for
--     (a finished job is no longer looked up by its task).
-- jobs_state (active jobs at start-up, the daily prune of old finished jobs) and
-- jobs_user_created (a user's history) cover every job and stay as they are.
DROP INDEX jobs_user_state;

CREATE INDEX jobs_user_state ON jobs (user_id, state, platform)
    WHERE state IN ('queued', 'submitting', 'running', 'delivering');

DROP INDEX jobs_task;

CREATE INDEX jobs_task ON jobs (provider, task_id)
    WHERE state IN ('queued', 'submitting', 'running', 'delivering');
