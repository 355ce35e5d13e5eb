-- Chunks without an embedding of their current text for :model, minus those that already failed
-- :max_attempts times for this very text (the rule: `chunks_to_embed`, migration 0013).
SELECT c.id, c.content, c.content_sha256, c.token_count
FROM chunks_to_embed(:model, CAST(:max_attempts AS integer)) c
ORDER BY c.id
