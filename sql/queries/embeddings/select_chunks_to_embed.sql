-- Chunks without an embedding of their current text for :model, minus those that already failed
-- :max_attempts times for this very text.
SELECT c.id, c.content, c.content_sha256, c.token_count
FROM document_chunks c
WHERE NOT EXISTS (
        SELECT 1 FROM chunk_embeddings e
        WHERE e.chunk_id = c.id AND e.model = :model AND e.content_sha256 = c.content_sha256)
  AND NOT EXISTS (
        SELECT 1 FROM embedding_errors x
        WHERE x.chunk_id = c.id AND x.model = :model AND x.content_sha256 = c.content_sha256
          AND x.attempts >= :max_attempts)
ORDER BY c.id
