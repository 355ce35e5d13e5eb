-- The chunks `chunks_to_embed` (migration 0013) selects with :after_sha < content_sha256 <= :last_sha and
-- :min_tokens <= token_count <= :max_tokens, by hash: every chunk of a text comes in the same page, so each
-- text is sent once while only a page is held. The bounds come from `select_embedding_page_bounds`, so that
-- the planner sees a narrow range of document_chunks_sha_idx.
SELECT c.id, c.content, c.content_sha256, c.token_count
FROM chunks_to_embed(:model, CAST(:max_attempts AS integer)) c
WHERE c.content_sha256 > :after_sha AND c.content_sha256 <= :last_sha
  AND c.token_count BETWEEN :min_tokens AND :max_tokens
ORDER BY c.content_sha256, c.id
