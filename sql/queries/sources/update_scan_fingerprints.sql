-- After a batch's documents and provenance are written, in the same transaction: each one's read
-- fingerprint with the state its rows now hold. No provenance row (the item was not written): NULL.
UPDATE source_documents d
SET scan_fingerprint = s.fingerprint || ':' || (
    SELECT ingested_state(
        d.title, d.content_sha256, d.metadata, p.content_type, p.source_uri, p.license_type,
        p.acquisition_method, p.rights_holder, p.hash_sha256, p.retention_years, p.acquired_at
    )
    FROM provenance p WHERE p.content_id = d.id
)
FROM unnest(CAST(:keys AS text[]), CAST(:fingerprints AS text[])) AS s (source_key, fingerprint)
WHERE d.source = :source AND d.source_key = s.source_key
