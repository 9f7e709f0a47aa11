-- The active version of each pack on each host (issue 8, upgrades).
-- PostgreSQL twin of migrations/sqlite/0005_active_versions.sql: same columns, same meaning.
--
-- Several versions of a pack may be installed side by side; one of them is
-- active, the one `{packs_dir}/{ref}` links to. Every switch is a new row that
-- is never overwritten (audit trail): the newest row per (host, pack_ref)
-- wins. `version` NULL means the pack was left with no active version (its
-- active version was uninstalled). `previous_version` is what was active
-- before the switch (`attune rollback` returns to it).

CREATE TABLE activations (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host             TEXT NOT NULL,
    pack_ref         TEXT NOT NULL,
    version          TEXT,
    previous_version TEXT,
    activated_at     BIGINT NOT NULL,
    activated_by     TEXT NOT NULL,
    -- 'install', 'activate', 'upgrade', 'rollback', 'upgrade-rollback', 'uninstall'.
    reason           TEXT NOT NULL
);

CREATE INDEX activations_host_ref ON activations (host, pack_ref, id);
