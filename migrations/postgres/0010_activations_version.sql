-- A listing's `active` column read from an index alone.
--
-- Every listing row looks up its pack's newest activation on its host
-- through activations_host_ref (0005), (host, pack_ref, id), then read the
-- row of `activations` for its `version`: one table lookup per listed pack,
-- half of what `attune list` cost the database at 10k packs. The same index
-- with `version` added still serves every lookup by (host, pack_ref) and
-- answers that one without the table. The same text for SQLite and
-- PostgreSQL (its twin in the other folder).
DROP INDEX activations_host_ref;

CREATE INDEX activations_host_ref ON activations (host, pack_ref, id, version);
