UPDATE embedding_batches b
SET applied_at = now(), texts_written = :texts_written, texts_failed = :texts_failed,
    tokens = :tokens, cost_usd = :tokens * m.price_per_million_tokens / 1000000 * :price_factor,
    error = coalesce(:error, b.error), updated_at = now()
FROM embedding_models m
WHERE b.id = :id AND m.name = b.model
