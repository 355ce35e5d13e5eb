SELECT source_key, content_sha256, title, metadata::text AS metadata
FROM source_documents
WHERE source = :source AND source_key = ANY(:keys)
