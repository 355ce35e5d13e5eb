-- The quota's bucket under a row lock, with the database clock, so that every process measures time alike.
SELECT requests, tokens, updated_at, paused_until, extract(epoch FROM clock_timestamp())::float8 AS now
FROM embedding_rate_limits
WHERE quota = :quota
FOR UPDATE
