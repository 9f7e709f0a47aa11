-- Bearer tokens for `attune serve`, and which token did each API install or
-- uninstall (see host/src/db/tokens.rs and host/src/api/).
--
-- Portable like 0001: BIGINT unix milliseconds, TEXT; the PostgreSQL twin is
-- migrations/postgres/0003_api_tokens.sql.

-- A token is `attune_<public_id>_<secret>`. Only the SHA-256 of the secret is
-- stored (hex); the token is found by its public id and the hashes are compared
-- in constant time. Rows are never deleted: revoking stamps them.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    public_id     TEXT NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('read', 'install', 'admin')),
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    last_used_at  BIGINT
);

-- One live token per name; a revoked name may be reused.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- The name of the token an API install or uninstall was made with; NULL for the CLI.
ALTER TABLE installations ADD COLUMN api_token TEXT;
