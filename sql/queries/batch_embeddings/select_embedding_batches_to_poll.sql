SELECT id, batch_id, polls
FROM embedding_batches
WHERE applied_at IS NULL AND batch_id IS NOT NULL
  AND status NOT IN ('completed', 'failed', 'expired', 'cancelled')
  AND next_poll_at <= now()
ORDER BY next_poll_at
