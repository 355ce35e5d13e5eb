-- Which of the named indexes exist next to chunk_embeddings, whether each build finished (an interrupted
-- CREATE INDEX CONCURRENTLY leaves an invalid one behind), and its storage options (IVFFlat's lists).
SELECT c.relname AS index_name, i.indisvalid AS valid, c.reloptions AS options
FROM pg_class c
JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relname = ANY(:index_names)
  AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = CAST('chunk_embeddings' AS regclass))
