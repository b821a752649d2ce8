-- Several bot processes on one database (issue 16): the same schema as
-- storage/postgres/migrations/0009_sharing.sql, which says what each table is for.
-- SQLite runs one bot process (its lock file), so only seen_events is used here; the
-- other tables keep both schemas alike for `wanbot db copy`.
CREATE TABLE job_leases (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL,
    token INTEGER NOT NULL
);
CREATE INDEX job_leases_owner ON job_leases (owner);

CREATE TRIGGER job_leases_final AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
BEGIN
    DELETE FROM job_leases WHERE job_id = NEW.id;
END;

CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    shards TEXT
);

CREATE TABLE gateway_identify (
    bucket INTEGER PRIMARY KEY,
    next_at REAL NOT NULL
);

CREATE TABLE seen_events (
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (platform, event_id)
);
CREATE INDEX seen_events_seen ON seen_events (seen_at);
