-- The registry; :name NULL lists every model, otherwise just that one.
SELECT name, provider, model, dimensions, price_per_million_tokens, status, activated_at, retired_at, embeddings_dropped_at
FROM embedding_models
WHERE CAST(:name AS text) IS NULL OR name = :name
ORDER BY created_at, name
