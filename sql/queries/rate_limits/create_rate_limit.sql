-- The quota's bucket, full, on first use.
INSERT INTO embedding_rate_limits (quota, requests, tokens, updated_at)
VALUES (:quota, :rpm, :tpm, extract(epoch FROM clock_timestamp()))
ON CONFLICT (quota) DO NOTHING
