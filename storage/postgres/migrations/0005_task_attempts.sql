-- Provider tasks a job has had: storage/sqlite/migrations/0005 in PostgreSQL (see there).

ALTER TABLE jobs ADD COLUMN task_attempts INTEGER NOT NULL DEFAULT 0
    CHECK (task_attempts >= 0);
