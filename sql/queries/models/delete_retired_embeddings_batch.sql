-- One bounded batch of a retired model's vectors; the status is re-checked so that a model re-opened
-- meanwhile keeps what it has.
DELETE FROM chunk_embeddings e
WHERE e.model = :model
  AND e.chunk_id IN (SELECT chunk_id FROM chunk_embeddings WHERE model = :model LIMIT :batch_size)
  AND EXISTS (SELECT 1 FROM embedding_models m WHERE m.name = :model AND m.status = 'retired')
