-- One source's document keys after :after up to :last (NULL: to the end), in byte order, each with its
-- read fingerprint where its rows still hold the state they were fingerprinted with (migration 0014), else
-- NULL: a scanned item with that read fingerprint would be written exactly as stored.
SELECT d.source_key,
       CASE WHEN split_part(d.scan_fingerprint, ':', 2) = ingested_state(
                d.title, d.content_sha256, d.metadata, p.content_type, p.source_uri, p.license_type,
                p.acquisition_method, p.rights_holder, p.hash_sha256, p.retention_years, p.acquired_at
            )
            THEN split_part(d.scan_fingerprint, ':', 1)
       END AS fingerprint
FROM source_documents d
LEFT JOIN provenance p ON p.content_id = d.id
WHERE d.source = :source AND d.source_key COLLATE "C" > :after
  AND (CAST(:last AS text) IS NULL OR d.source_key COLLATE "C" <= :last)
