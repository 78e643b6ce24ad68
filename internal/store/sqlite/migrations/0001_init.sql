-- Lode's first schema.
--
-- Kept portable to PostgreSQL: plain types, times as BIGINT milliseconds
-- since the Unix epoch (UTC; NULL where a time is not set yet), JSON as
-- TEXT. Two SQLite-isms need a translation there: BLOB is bytea, and
-- INTEGER PRIMARY KEY AUTOINCREMENT is BIGSERIAL (or an identity column).

CREATE TABLE pools (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,
    region     TEXT NOT NULL,
    tier       INTEGER NOT NULL,
    state      TEXT NOT NULL,
    -- NULL when the pool admits no agents, so that many pools may have none.
    join_token TEXT UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY,
    pool_id           TEXT NOT NULL REFERENCES pools (id),
    name              TEXT NOT NULL,
    state             TEXT NOT NULL,
    milli_cpus        BIGINT NOT NULL,
    memory_bytes      BIGINT NOT NULL,
    gpus              TEXT NOT NULL, -- JSON: [{"model": ..., "memory_bytes": ...}]
    labels            TEXT NOT NULL, -- JSON object
    credential_hash   TEXT NOT NULL,
    agent_version     TEXT NOT NULL,
    registered_at     BIGINT NOT NULL,
    last_heartbeat_at BIGINT,
    lease_expires_at  BIGINT
);

CREATE INDEX nodes_pool_id ON nodes (pool_id);
CREATE INDEX nodes_state_lease ON nodes (state, lease_expires_at);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    project          TEXT NOT NULL,
    spec             TEXT NOT NULL, -- JSON: spec.Job
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    workdir_object   TEXT NOT NULL,
    workdir_manifest TEXT NOT NULL,
    data_object      TEXT NOT NULL,
    datasets         TEXT NOT NULL, -- JSON: [store.DatasetRef]
    current_attempt  TEXT NOT NULL, -- '' when none
    attempts         INTEGER NOT NULL,
    retries          TEXT NOT NULL, -- JSON: core.RetryCount
    cancel_requested BOOLEAN NOT NULL,
    exit_code        INTEGER NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);

CREATE INDEX jobs_created_at ON jobs (created_at);
CREATE INDEX jobs_project_created_at ON jobs (project, created_at);
CREATE INDEX jobs_state_priority ON jobs (state, priority, created_at);

CREATE TABLE attempts (
    id            TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES jobs (id),
    seq           INTEGER NOT NULL,
    pool_id       TEXT NOT NULL REFERENCES pools (id),
    state         TEXT NOT NULL,
    fencing_token TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    ended_at      BIGINT,
    UNIQUE (job_id, seq)
);

CREATE TABLE tasks (
    attempt_id   TEXT NOT NULL REFERENCES attempts (id),
    rank         INTEGER NOT NULL,
    node_id      TEXT NOT NULL REFERENCES nodes (id),
    state        TEXT NOT NULL,
    exit_code    INTEGER NOT NULL,
    message      TEXT NOT NULL,
    milli_cpus   BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    gpus         INTEGER NOT NULL,
    gpu_models   TEXT NOT NULL, -- JSON: ["a100", ...]
    started_at   BIGINT,
    ended_at     BIGINT,
    PRIMARY KEY (attempt_id, rank)
);

CREATE INDEX tasks_node_state ON tasks (node_id, state);

CREATE TABLE logs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- BIGSERIAL in PostgreSQL
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    attempt_id TEXT NOT NULL REFERENCES attempts (id),
    rank       INTEGER NOT NULL,
    stream     TEXT NOT NULL,
    data       BLOB NOT NULL, -- bytea in PostgreSQL
    created_at BIGINT NOT NULL
);

CREATE INDEX logs_job_seq ON logs (job_id, seq);

CREATE TABLE metrics (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- BIGSERIAL in PostgreSQL
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    attempt_id TEXT NOT NULL REFERENCES attempts (id),
    rank       INTEGER NOT NULL,
    data       TEXT NOT NULL, -- one JSON value
    created_at BIGINT NOT NULL
);

CREATE INDEX metrics_job_seq ON metrics (job_id, seq);

CREATE TABLE objects (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    project     TEXT NOT NULL,
    name        TEXT NOT NULL, -- '' for unnamed objects
    wrapped_key BLOB NOT NULL, -- bytea in PostgreSQL
    created_at  BIGINT NOT NULL
);

-- A named object (a dataset's) is found by its name, so the name is unique.
CREATE UNIQUE INDEX objects_name ON objects (project, kind, name) WHERE name <> '';

CREATE TABLE datasets (
    project        TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    object_id      TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    classification INTEGER NOT NULL,
    files          INTEGER NOT NULL,
    bytes          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (project, name, version)
);

CREATE TABLE checkpoints (
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    version    INTEGER NOT NULL,
    attempt_id TEXT NOT NULL REFERENCES attempts (id),
    manifest   TEXT NOT NULL,
    files      INTEGER NOT NULL,
    bytes      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, version)
);

CREATE TABLE artifacts (
    attempt_id TEXT PRIMARY KEY REFERENCES attempts (id),
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    manifest   TEXT NOT NULL,
    files      INTEGER NOT NULL,
    bytes      BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX artifacts_job_id ON artifacts (job_id);
