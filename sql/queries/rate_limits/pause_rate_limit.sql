-- Hold every sender of the quota until the provider's reset; a later pause never shortens an earlier one.
UPDATE embedding_rate_limits
SET paused_until = greatest(paused_until, extract(epoch FROM clock_timestamp()) + :seconds)
WHERE quota = :quota
