-- A request file's totals, once its last line is written: the row was inserted empty before its first
-- line so that each request's texts could be recorded as the file grew.
UPDATE embedding_batches
SET requests = :requests,
    texts = :texts,
    estimated_tokens = :estimated_tokens,
    estimated_cost_usd = :estimated_cost_usd,
    sync_cost_usd = :sync_cost_usd,
    file_bytes = :file_bytes,
    updated_at = now()
WHERE id = :id
