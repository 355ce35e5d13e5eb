-- Batches, newest first; :state filters to 'open' (not applied), 'ready' (finished, not applied) or all.
SELECT b.id, b.batch_id, b.model, b.status, b.input_file_id, b.output_file_id, b.error_file_id,
       b.requests, b.texts, b.estimated_tokens, b.estimated_cost_usd, b.sync_cost_usd, b.error,
       b.created_at, b.applied_at, b.texts_written, b.texts_failed, b.tokens, b.cost_usd
FROM embedding_batches b
WHERE CAST(:state AS text) IS NULL
   OR (:state = 'open' AND b.applied_at IS NULL)
   OR (:state = 'ready' AND b.applied_at IS NULL AND b.status IN ('completed', 'failed', 'expired', 'cancelled'))
ORDER BY b.id DESC
