-- Chunks of the current corpus that have neither a vector of their current text for :model nor a
-- recorded failure for it: chunks written by a run beside this one after it read what to embed.
SELECT count(*)
FROM document_chunks c
WHERE NOT EXISTS (
        SELECT 1 FROM chunk_embeddings e
        WHERE e.chunk_id = c.id AND e.model = :model AND e.content_sha256 = c.content_sha256)
  AND NOT EXISTS (
        SELECT 1 FROM embedding_errors x
        WHERE x.chunk_id = c.id AND x.model = :model AND x.content_sha256 = c.content_sha256)
