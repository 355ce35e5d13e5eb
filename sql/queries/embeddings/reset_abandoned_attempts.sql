-- Give chunks that failed :max_attempts times for their current text a fresh set of attempts; the error row
-- stays (with attempts 0) so the last reason is visible until a vector replaces it.
UPDATE embedding_errors x
SET attempts = 0
FROM document_chunks c
WHERE x.model = :model
  AND x.attempts >= :max_attempts
  AND c.id = x.chunk_id
  AND c.content_sha256 = x.content_sha256
