-- Chunks lacking a current embedding take the vector of any chunk with the same text, for free; failing that,
-- a vector of a deleted chunk with that text still within its grace period (deleted_chunk_vectors), which
-- then leaves the cache: it is a live vector again.
-- Reads and writes see one snapshot, so a stale row may donate its vector before it is replaced.
WITH todo AS (
    SELECT c.id, c.content_sha256
    FROM chunks_without_embedding(:model) c
), live AS (
    SELECT DISTINCT ON (e.content_sha256) e.content_sha256, e.embedding, e.token_count
    FROM chunk_embeddings e
    WHERE e.model = :model AND e.content_sha256 IN (SELECT content_sha256 FROM todo)
    ORDER BY e.content_sha256, e.created_at DESC
), cached AS (
    DELETE FROM deleted_chunk_vectors k
    WHERE k.model = :model AND k.content_sha256 IN (SELECT content_sha256 FROM todo) AND k.keep_until > now()
    RETURNING k.content_sha256, k.embedding, k.token_count
), donor AS (
    SELECT content_sha256, embedding, token_count FROM live
    UNION ALL
    SELECT k.content_sha256, k.embedding, k.token_count
    FROM cached k
    WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.content_sha256 = k.content_sha256)
)
INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)
SELECT t.id, :model, d.embedding, d.content_sha256, d.token_count
FROM todo t JOIN donor d USING (content_sha256)
ON CONFLICT (chunk_id, model) DO UPDATE
SET embedding = EXCLUDED.embedding,
    content_sha256 = EXCLUDED.content_sha256,
    token_count = EXCLUDED.token_count,
    created_at = now()
