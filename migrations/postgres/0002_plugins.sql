-- PostgreSQL twin of migrations/sqlite/0002_plugins.sql.
-- Added (third-party) fetcher plugins and the capabilities operators granted them.
--
-- The wasm itself lives in the database, content-addressed by SHA-256, so
-- every host sharing this database runs the very same plugin bytes.

CREATE TABLE plugin_blobs (
    sha256 TEXT PRIMARY KEY NOT NULL,
    wasm   BYTEA NOT NULL
);

CREATE TABLE plugins (
    name              TEXT PRIMARY KEY NOT NULL,
    version           TEXT NOT NULL,
    wit_version       TEXT NOT NULL,
    summary           TEXT NOT NULL,
    sha256            TEXT NOT NULL REFERENCES plugin_blobs (sha256),
    -- JSON arrays: the schemes it handles, the capabilities it asks for.
    schemes_json      TEXT NOT NULL,
    capabilities_json TEXT NOT NULL,
    added_from        TEXT NOT NULL,
    added_at          BIGINT NOT NULL,
    added_by          TEXT NOT NULL
);

-- A grant is never deleted: revoking stamps it, so the audit trail keeps who
-- allowed what, and when it stopped.
CREATE TABLE plugin_grants (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin      TEXT NOT NULL,
    capability  TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    granted_by  TEXT NOT NULL,
    revoked_at  BIGINT,
    revoked_by  TEXT
);

CREATE INDEX plugin_grants_live ON plugin_grants (plugin, capability) WHERE revoked_at IS NULL;
