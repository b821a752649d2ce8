-- Fewer bytes per job: storage/sqlite/migrations/0006_smaller_jobs.sql in PostgreSQL (see
-- there). PostgreSQL stores double precision in 8 bytes either way; ledger times are
-- floored to whole seconds here too, so both backends hold the same values.
--
-- 1. No 'refund' row when nothing is refunded; a refund only while the job has no
-- charge, so a second settle changes nothing (ON CONFLICT DO NOTHING, as before). The
-- SELECT sees the ledger as it was when the statement started, before either insert.
CREATE OR REPLACE FUNCTION jobs_settle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd)
    SELECT NEW.id, NEW.scope_id, NEW.user_id, settle.kind, settle.images, NEW.admitted_at,
           floor(NEW.updated_at), settle.price
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

-- 2. Indexes that only ever serve active jobs hold only those (the queries name the
-- same literal state list, so the planner can prove the predicate).
DROP INDEX jobs_user_state;

CREATE INDEX jobs_user_state ON jobs (user_id, state, platform)
    WHERE state IN ('queued', 'submitting', 'running', 'delivering');

DROP INDEX jobs_task;

CREATE INDEX jobs_task ON jobs (provider, task_id)
    WHERE state IN ('queued', 'submitting', 'running', 'delivering');

-- 3. The spend report's ledger index holds charges only, as in SQLite since 0004 (the
-- report's queries say kind = 'charge').
DROP INDEX ledger_charges;

CREATE INDEX ledger_charges ON ledger (guild_id, period_ts) WHERE kind = 'charge';
