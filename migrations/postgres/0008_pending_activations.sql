-- The start-up check's work list for active versions (issue 18).
--
-- A pack whose first version is recorded installed on a host before any
-- activation of it is recorded there is listed here, in the same transaction
-- (see Db::complete_install); recording an activation of it removes the row
-- (Db::record_activation). A row that outlives its install means the install
-- was killed between the two: the next command's start-up check makes the
-- highest installed version active, as it did by scanning every installed
-- pack before this table existed. The same text for SQLite and PostgreSQL
-- (its twin in the other folder).
CREATE TABLE pending_activations (
    host     TEXT NOT NULL,
    pack_ref TEXT NOT NULL,
    PRIMARY KEY (host, pack_ref)
);

-- Packs installed before active versions existed (migration 0005) and not
-- given one since: the one-off backfill, now found by this list.
INSERT INTO pending_activations (host, pack_ref)
SELECT DISTINCT i.host, i.pack_ref FROM installations i
WHERE i.status = 'installed'
  AND NOT EXISTS (SELECT 1 FROM activations a WHERE a.host = i.host AND a.pack_ref = i.pack_ref);
