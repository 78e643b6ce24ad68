-- A job submission may carry an idempotency key: a submit retried with the
-- same key (after a timeout, across a control-plane crash) finds the job
-- the first one created instead of creating another. request_hash tells a
-- true retry from the key's reuse for a different request.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (project, idempotency_key) WHERE idempotency_key <> '';
