-- One page of the chunks `select_chunks_to_embed` selects, with :min_tokens <= token_count <= :max_tokens,
-- after (:after_sha, :after_id) in (content_sha256, id) order: chunks of one text arrive together, so each
-- text is sent once while only a page is held. The first condition lets document_chunks_sha_idx drive the scan.
SELECT c.id, c.content, c.content_sha256, c.token_count
FROM document_chunks c
WHERE c.content_sha256 >= :after_sha
  AND (c.content_sha256, c.id) > (:after_sha, :after_id)
  AND c.token_count BETWEEN :min_tokens AND :max_tokens
  AND NOT EXISTS (
        SELECT 1 FROM chunk_embeddings e
        WHERE e.chunk_id = c.id AND e.model = :model AND e.content_sha256 = c.content_sha256)
  AND NOT EXISTS (
        SELECT 1 FROM embedding_errors x
        WHERE x.chunk_id = c.id AND x.model = :model AND x.content_sha256 = c.content_sha256
          AND x.attempts >= :max_attempts)
ORDER BY c.content_sha256, c.id
LIMIT :limit
