-- One page of a source's document keys after :after (from the first key when it is NULL), in key order
-- (the (source, source_key) index).
SELECT source_key
FROM source_documents
WHERE source = :source AND (CAST(:after AS text) IS NULL OR source_key > :after)
ORDER BY source_key
LIMIT :limit
