-- The hash-chained audit log (internal/audit) and the signed checkpoints
-- that seal its head.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    time       BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    project    TEXT NOT NULL,
    detail     TEXT NOT NULL, -- JSON object
    prev       TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    head      TEXT NOT NULL,
    time      BIGINT NOT NULL,
    signature BLOB NOT NULL -- bytea in PostgreSQL
);
