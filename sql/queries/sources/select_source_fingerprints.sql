-- What decides whether a scanned document changed (hash, title, metadata), and the provenance terms stored
-- for it as upsert_provenance would write them (hash_sha256 is the document's; acquired_at falls back to
-- when the document entered the database): an unchanged document whose terms match needs no upsert.
SELECT d.source_key, d.content_sha256, d.title, d.metadata::text AS metadata,
       d.acquired_at AS document_acquired_at,
       p.content_id IS NOT NULL AS has_provenance,
       p.content_type, p.source_uri, p.license_type, p.acquisition_method, p.rights_holder,
       p.hash_sha256, p.retention_years, p.acquired_at
FROM source_documents d
LEFT JOIN provenance p ON p.content_id = d.id
WHERE d.source = :source AND d.source_key = ANY(:keys)
