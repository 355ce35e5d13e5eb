-- Whoever holds this row lock is the only one applying the batch; `applied_at` is set in that transaction.
SELECT b.id, b.batch_id, b.model, b.status, b.output_file_id, b.error_file_id, b.error, b.applied_at,
       m.dimensions
FROM embedding_batches b
JOIN embedding_models m ON m.name = b.model
WHERE b.batch_id = :batch_id
FOR UPDATE OF b
