-- Several bot processes on one database (issue 16): storage/sqlite/migrations/0009_sharing.sql
-- is the same schema (SQLite runs one process, so only seen_events is used there).
--
-- job_leases: which process works a job now. A lease is taken with
-- FOR UPDATE SKIP LOCKED, renewed while the job is worked on and taken over once
-- `until` (the database's clock, epoch seconds) has passed; `token` grows with every
-- claim and is the fencing token checked right before results are posted. Kept in a
-- table of its own, emptied when a job ends, so finished jobs carry no lease bytes.
CREATE TABLE job_leases (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    token BIGINT NOT NULL
);
CREATE INDEX job_leases_owner ON job_leases (owner);

CREATE FUNCTION job_leases_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_leases WHERE job_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_leases_final AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('done', 'failed', 'cancelled'))
    EXECUTE FUNCTION job_leases_final();

-- workers: one row per running process, its heartbeat in seen_at. The live count
-- divides the provider's status-call rate among the processes.
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    shards TEXT
);

-- gateway_identify: Discord's IDENTIFY pacing across processes, one row per
-- rate-limit bucket (shard_id % max_concurrency): the earliest time of its next IDENTIFY.
CREATE TABLE gateway_identify (
    bucket INTEGER PRIMARY KEY,
    next_at DOUBLE PRECISION NOT NULL
);

-- seen_events: platform events already handled (Slack retries, several Socket Mode
-- connections delivering the same event): the first INSERT wins.
CREATE TABLE seen_events (
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, event_id)
);
CREATE INDEX seen_events_seen ON seen_events (seen_at);
