-- `attune list` read from an index alone.
--
-- installations_host_status (0001) served `pending(host)` and the listings
-- by (host, status, pack_ref, version), but a listing then looked up each of
-- its rows in the table, past the row's stored manifest, for the three more
-- columns its table shows. The same index with those three columns added
-- still serves both, and `attune list` (Db::listing_rows) never reads the
-- table. The same text for SQLite and PostgreSQL (its twin in the other
-- folder).
DROP INDEX installations_host_status;

CREATE INDEX installations_host_status
    ON installations (host, status, pack_ref, version, source_type, installed_at, checksum);
