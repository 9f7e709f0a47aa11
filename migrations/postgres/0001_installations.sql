-- The installation journal and audit trail (see host/src/db/mod.rs).
--
-- The PostgreSQL twin of migrations/sqlite/0001_installations.sql, line for line
-- but for the id column: `BIGINT GENERATED ALWAYS AS IDENTITY` never reuses an id,
-- like SQLite's AUTOINCREMENT (audit records cite ids).

CREATE TABLE packs (
    pack_ref           TEXT PRIMARY KEY NOT NULL,
    name               TEXT NOT NULL,
    description        TEXT,
    -- Set when the first install of any version completes, not when one is attempted.
    first_installed_at BIGINT
);

-- One row per install ACTION. Rows are never overwritten with another action:
-- only the status of a row moves (pending -> installed -> replaced/removed, or
-- pending -> failed), so the table is the full history.
CREATE TABLE installations (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pack_ref           TEXT NOT NULL REFERENCES packs (pack_ref),
    version            TEXT NOT NULL,
    action             TEXT NOT NULL
        CHECK (action IN ('install', 'reinstall', 'uninstall')),
    status             TEXT NOT NULL
        CHECK (status IN ('pending', 'installed', 'replaced', 'removed', 'failed')),
    source_type        TEXT NOT NULL,
    -- Already redacted by the caller: credentials are never stored.
    source             TEXT NOT NULL,
    requested_ref      TEXT,
    resolved_commit    TEXT,
    checksum           TEXT NOT NULL,
    checksum_algorithm TEXT NOT NULL,
    manifest_json      TEXT NOT NULL,
    verified           BOOLEAN NOT NULL,
    verified_at        BIGINT,
    verify_status      TEXT
        CHECK (verify_status IS NULL OR verify_status IN ('ok', 'tampered', 'missing')),
    installed_at       BIGINT NOT NULL,
    installed_by       TEXT NOT NULL,
    method             TEXT NOT NULL CHECK (method IN ('cli', 'api')),
    storage_path       TEXT NOT NULL,
    fetcher_name       TEXT NOT NULL,
    fetcher_version    TEXT NOT NULL,
    fetcher_hash       TEXT,
    host               TEXT NOT NULL,
    metadata_json      TEXT NOT NULL DEFAULT '{}',
    error              TEXT,
    finished_at        BIGINT
);

-- The journal's core invariant, enforced by the database rather than by hope:
-- at most one live installation per ref+version on a host.
CREATE UNIQUE INDEX installations_one_live
    ON installations (pack_ref, version, host)
    WHERE status = 'installed';

-- pending(host) at start-up, installed(host) for listings.
CREATE INDEX installations_host_status ON installations (host, status, pack_ref, version);

-- history(ref), installed_versions(ref, host), current(ref, version, host).
CREATE INDEX installations_ref ON installations (pack_ref, version, host);
