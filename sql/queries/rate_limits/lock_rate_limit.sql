-- The quota's bucket under a row lock, with the database clock, so that every process measures time alike.
-- (`paused_until`, written by earlier versions, is no longer read: the bucket itself follows the provider.)
SELECT requests, tokens, updated_at, extract(epoch FROM clock_timestamp())::float8 AS now
FROM embedding_rate_limits
WHERE quota = :quota
FOR UPDATE
