-- How far the next page of texts to embed reaches: of the first :limit texts after :after_sha (content-hash
-- order) with a chunk `chunks_to_embed` selects (:min_tokens <= token_count <= :max_tokens),
-- their number and the last hash. Walks document_chunks_sha_idx and stops after :limit texts.
SELECT count(*) AS texts, max(content_sha256) AS last_sha
FROM (
    SELECT DISTINCT c.content_sha256
    FROM chunks_to_embed(:model, CAST(:max_attempts AS integer)) c
    WHERE c.content_sha256 > :after_sha
      AND c.token_count BETWEEN :min_tokens AND :max_tokens
    ORDER BY c.content_sha256
    LIMIT :limit
) AS texts
