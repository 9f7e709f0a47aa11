-- Signed (TUF) registry indexes (`attune index add NAME URL --root root.json`).
--
-- The same text for SQLite and PostgreSQL (its twin in the other folder).
-- `tuf_target` is the target the index document is (e.g. `index.json` or
-- `v1/index.json`); NULL means the index is unsigned, trusted as fetched.
-- The trusted metadata itself lives per host beside the cached index, under
-- {cache_dir}/indexes-v1/{name}-{key}.tuf/; `tuf_targets_version` is the
-- targets metadata version of the last successful verified fetch, shown by
-- `index list`.
ALTER TABLE indexes ADD COLUMN tuf_target TEXT;
ALTER TABLE indexes ADD COLUMN tuf_targets_version BIGINT;
