-- Retired models whose grace period is over and whose vectors are still stored.
SELECT name, dimensions
FROM embedding_models
WHERE status = 'retired'
  AND embeddings_dropped_at IS NULL
  AND retired_at <= now() - CAST(:grace_days AS double precision) * interval '1 day'
ORDER BY retired_at
