-- Registry indexes this database's hosts install by name from (`attune index add`).
-- PostgreSQL twin of migrations/sqlite/0004_indexes.sql: same columns, same meaning.
--
-- Only the registration and the facts of the last successful fetch live here;
-- the fetched JSON itself is cached per host under {cache_dir}/indexes-v1/.
-- `id` orders the indexes: on equal versions the earlier one wins.

CREATE TABLE indexes (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    -- An http(s) URL (never with credentials) or an absolute file path.
    location       TEXT NOT NULL,
    added_at       BIGINT NOT NULL,
    added_by       TEXT NOT NULL,
    -- From the last successful fetch: 'attune' or 'exchange', when, by whom,
    -- the SHA-256 of the bytes, and how many packs and versions it listed.
    format         TEXT,
    fetched_at     BIGINT,
    fetched_by     TEXT,
    content_sha256 TEXT,
    pack_count     BIGINT,
    version_count  BIGINT
);
