DELETE FROM source_documents
WHERE source = :source AND source_key = ANY(:keys)
