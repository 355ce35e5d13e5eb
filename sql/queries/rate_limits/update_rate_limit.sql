UPDATE embedding_rate_limits
SET requests = :requests, tokens = :tokens, updated_at = :updated_at
WHERE quota = :quota
