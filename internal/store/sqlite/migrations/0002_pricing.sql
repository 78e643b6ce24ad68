-- Pools carry what placement needs to price them; attempts remember the
-- price they were placed at; projects carry budgets and fair-share weights;
-- every ended attempt leaves a usage record.

ALTER TABLE pools ADD COLUMN interconnect TEXT NOT NULL DEFAULT '{}'; -- JSON: core.Interconnect
ALTER TABLE pools ADD COLUMN prices TEXT NOT NULL DEFAULT '{}';       -- JSON: core.Prices

ALTER TABLE attempts ADD COLUMN price_per_hour DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN gpu_model TEXT NOT NULL DEFAULT '';
ALTER TABLE attempts ADD COLUMN preempt_requested BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE projects (
    name       TEXT PRIMARY KEY,
    budget     DOUBLE PRECISION NOT NULL, -- dollars; 0: none
    weight     DOUBLE PRECISION NOT NULL, -- fair-share weight
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE usage (
    attempt_id     TEXT PRIMARY KEY REFERENCES attempts (id),
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    project        TEXT NOT NULL,
    pool_id        TEXT NOT NULL REFERENCES pools (id),
    state          TEXT NOT NULL, -- how the attempt ended
    gpu_model      TEXT NOT NULL,
    ranks          INTEGER NOT NULL,
    gpus           INTEGER NOT NULL, -- per rank
    milli_cpus     BIGINT NOT NULL,  -- per rank
    memory_bytes   BIGINT NOT NULL,  -- per rank
    started_at     BIGINT,
    ended_at       BIGINT NOT NULL,
    seconds        DOUBLE PRECISION NOT NULL,
    price_per_hour DOUBLE PRECISION NOT NULL,
    cost           DOUBLE PRECISION NOT NULL
);

CREATE INDEX usage_job ON usage (job_id);
CREATE INDEX usage_project ON usage (project);
CREATE INDEX usage_pool ON usage (pool_id);
