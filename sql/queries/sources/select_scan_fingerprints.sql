-- The read fingerprints of one source's documents with keys from :first to :last in byte order, for those
-- whose rows still hold the state they were fingerprinted with (migration 0015): a scanned item with the
-- same read fingerprint would be written exactly as stored.
SELECT d.source_key, split_part(d.scan_fingerprint, ':', 1) AS fingerprint
FROM source_documents d
LEFT JOIN provenance p ON p.content_id = d.id
WHERE d.source = :source AND d.source_key COLLATE "C" BETWEEN :first AND :last
  AND split_part(d.scan_fingerprint, ':', 2) = ingested_state(
      d.title, d.content_sha256, d.metadata, p.content_type, p.source_uri, p.license_type,
      p.acquisition_method, p.rights_holder, p.hash_sha256, p.retention_years, p.acquired_at
  )
