-- The clean-up of a retired model's vectors begins: from now on retrieve_chunks refuses the model instead
-- of answering from a half-deleted set (kept when a previous clean-up was interrupted).
UPDATE embedding_models
SET embeddings_dropping_at = coalesce(embeddings_dropping_at, now())
WHERE name = :model AND status = 'retired'
