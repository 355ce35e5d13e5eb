-- The model of one batch, to take that model's embedding lock before the batch's row lock.
SELECT model FROM embedding_batches WHERE batch_id = :batch_id
