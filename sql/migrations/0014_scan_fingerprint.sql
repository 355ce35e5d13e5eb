-- What lets an unchanged re-scan skip parsing: each ingested item's fingerprint, "<read>:<state>". <read> is
-- the sha256 of the item exactly as read plus everything that turns those bytes into rows (the reading
-- rules' code, the source's provenance defaults); <state> is ingested_state() of the rows written from it.
-- An item whose <read> matches and whose rows still hash to <state> would be written exactly as stored, so
-- it is not parsed; anything else (no fingerprint, other bytes, other rules, rows changed since by anyone)
-- takes the full comparison. NULL until ingestion writes it.
ALTER TABLE source_documents ADD COLUMN scan_fingerprint text;

-- A scan reads its files in code point order (byte order of UTF-8, which is "C"'s) and asks for the stored
-- fingerprints of one key range at a time; the database's own collation may order keys otherwise.
CREATE INDEX source_documents_source_key_bytes_idx ON source_documents (source, source_key COLLATE "C");

-- The values ingestion derives from an item, as stored: the document's and the ingestion-owned provenance
-- columns. acquired_at as epoch seconds: its text form would follow the session's TimeZone and DateStyle.
CREATE FUNCTION ingested_state(
    title text, content_sha256 text, metadata jsonb,
    content_type text, source_uri text, license_type text, acquisition_method text, rights_holder text,
    hash_sha256 text, retention_years integer, acquired_at timestamptz
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT md5(ROW(
        title, content_sha256, metadata, content_type, source_uri, license_type, acquisition_method,
        rights_holder, hash_sha256, retention_years, extract(epoch FROM acquired_at)
    )::text)
$$;
