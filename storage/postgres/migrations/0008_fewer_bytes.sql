-- Fewer bytes per job (issue 17): storage/sqlite/migrations/0008_fewer_bytes.sql.
-- A callback is accepted only for an active job, so a final job's callback token is
-- dead weight: the store clears it whenever a job reaches a final state (its
-- transition() and finish(), storage/job_rows.py final_values()), and this clears
-- the tokens of jobs already final.
-- The store also stops writing what nothing reads back from a stored job (the
-- requester's role ids and display name) and the request's count when it equals the
-- reservation (storage/job_rows.py); rows written before are left as they are and
-- decode the same.
UPDATE jobs SET callback_token = NULL
WHERE state IN ('done', 'failed', 'cancelled') AND callback_token IS NOT NULL;

-- A user's history (user_jobs()) is looked up by user id and time; the platform is
-- checked on the row (the same user id on two platforms is rare), so the index no
-- longer repeats it in every kept job's entry. jobs_state (state, created_at) stays:
-- besides the start-up and the prune it answers the jobs-by-state count of every
-- /metrics scrape from the index alone.
DROP INDEX jobs_user_created;

CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
