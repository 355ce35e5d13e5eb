-- Chunks lacking a current embedding take the vector of any chunk with the same text, for free.
-- Reads and writes see one snapshot, so a stale row may donate its vector before it is replaced.
WITH todo AS (
    SELECT c.id, c.content_sha256
    FROM chunks_without_embedding(:model) c
), donor AS (
    SELECT DISTINCT ON (e.content_sha256) e.content_sha256, e.embedding, e.token_count
    FROM chunk_embeddings e
    WHERE e.model = :model AND e.content_sha256 IN (SELECT content_sha256 FROM todo)
    ORDER BY e.content_sha256, e.created_at DESC
)
INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)
SELECT t.id, :model, d.embedding, d.content_sha256, d.token_count
FROM todo t JOIN donor d USING (content_sha256)
ON CONFLICT (chunk_id, model) DO UPDATE
SET embedding = EXCLUDED.embedding,
    content_sha256 = EXCLUDED.content_sha256,
    token_count = EXCLUDED.token_count,
    created_at = now()
