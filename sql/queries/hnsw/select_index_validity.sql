-- Whether an index exists next to chunk_embeddings, and whether a build finished (an interrupted
-- CREATE INDEX CONCURRENTLY leaves an invalid one behind).
SELECT i.indisvalid
FROM pg_class c
JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relname = :index_name
  AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = CAST('chunk_embeddings' AS regclass))
