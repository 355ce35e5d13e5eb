INSERT INTO embedding_batches
    (model, requests, texts, estimated_tokens, estimated_cost_usd, sync_cost_usd, file_bytes, run_id)
VALUES (:model, :requests, :texts, :estimated_tokens, :estimated_cost_usd, :sync_cost_usd, :file_bytes, :run_id)
RETURNING id
