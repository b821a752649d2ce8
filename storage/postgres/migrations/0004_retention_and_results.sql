-- storage/sqlite/migrations/0004_retention_and_results.sql in PostgreSQL (see there).
--
-- 1. Finished jobs are pruned after JOB_RETENTION_DAYS; the ledger is kept for ever, so
-- its rows must outlive their job. PostgreSQL drops the foreign key in place (SQLite has
-- to rebuild the table); everything else about the ledger is unchanged.

ALTER TABLE ledger DROP CONSTRAINT ledger_job_id_fkey;

-- 2. Result URLs live in a side table while a job is being delivered, not in its row;
-- jobs.result_urls stays (always '[]' from here on). The store reads
-- COALESCE(job_results.urls, jobs.result_urls).
CREATE TABLE job_results (
    job_id TEXT PRIMARY KEY,
    urls TEXT NOT NULL                  -- JSON list
);

INSERT INTO job_results (job_id, urls)
SELECT id, result_urls FROM jobs
WHERE result_urls <> '[]' AND state NOT IN ('done', 'failed', 'cancelled');

UPDATE jobs SET result_urls = '[]' WHERE result_urls <> '[]';

CREATE FUNCTION job_results_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_results WHERE job_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_results_final AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('done', 'failed', 'cancelled'))
    EXECUTE FUNCTION job_results_final();

CREATE FUNCTION job_results_pruned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_results WHERE job_id = OLD.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_results_pruned AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_results_pruned();
