-- Citation targets for the demo dialogue log: the documents ingestion actually stored.
SELECT source_key
FROM source_documents
ORDER BY source, source_key
LIMIT :limit
