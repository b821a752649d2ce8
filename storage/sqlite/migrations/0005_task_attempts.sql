-- How many provider tasks a job has had (issue 13, rule 2): a task that failed where
-- failed tasks are free is replaced once at most, and that "once" must survive a
-- restart, so the count is stored with the job rather than kept in memory.

ALTER TABLE jobs ADD COLUMN task_attempts INTEGER NOT NULL DEFAULT 0
    CHECK (task_attempts >= 0);
