-- Chunks of :model left without a vector of their current text because that text failed :max_attempts
-- times: embedding runs skip them until run config retry_abandoned is set.
SELECT count(*)
FROM chunks_without_embedding(:model) c
JOIN embedding_errors x
  ON x.chunk_id = c.id AND x.model = :model AND x.content_sha256 = c.content_sha256
WHERE x.attempts >= :max_attempts
