-- One page of a source's document keys from :after on, in key order (the (source, source_key) index).
SELECT source_key
FROM source_documents
WHERE source = :source AND source_key >= :after
ORDER BY source_key
LIMIT :limit
