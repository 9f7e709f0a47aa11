-- `attune serve` jobs (installs and upgrades over the API), kept in the
-- database so a restart loses none and several replicas on one database
-- share one queue (see host/src/db/jobs.rs and host/src/api/jobs.rs).
--
-- The same text for SQLite and PostgreSQL (its twin in the other folder):
-- BIGINT unix milliseconds, JSON as TEXT.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('install', 'upgrade')),
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')),
    -- What is shown: the source without credentials, a spec, a ref.
    source       TEXT NOT NULL,
    -- The request as the API accepted it (JSON, credentials removed).
    work         TEXT NOT NULL,
    -- The name of the token that submitted it.
    token        TEXT NOT NULL,
    -- The replica that accepted it; with `pinned` = 1 only that one may run
    -- it (it holds what the database must not: an open local source, URL
    -- credentials).
    accepted_by  TEXT NOT NULL,
    pinned       BIGINT NOT NULL DEFAULT 0,
    -- The replica running it, and when it last said it still is.
    claimed_by   TEXT,
    heartbeat_at BIGINT,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT,
    result       TEXT,
    error        TEXT,
    -- The progress history (JSON array), compacted when the job ends.
    events       TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX jobs_queue ON jobs (state, created_at);
CREATE INDEX jobs_token ON jobs (token, created_at);
