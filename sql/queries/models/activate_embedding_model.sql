UPDATE embedding_models
SET status = 'active', activated_at = now(), retired_at = NULL, embeddings_dropped_at = NULL,
    embeddings_dropping_at = NULL
WHERE name = :name
