WITH errors AS (
    DELETE FROM embedding_errors WHERE model = :model
)
UPDATE embedding_models
SET embeddings_dropped_at = now()
WHERE name = :model AND status = 'retired'
