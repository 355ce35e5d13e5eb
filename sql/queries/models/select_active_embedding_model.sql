SELECT name, provider, model, dimensions, price_per_million_tokens, status, activated_at, retired_at, embeddings_dropped_at
FROM embedding_models
WHERE status = 'active'
