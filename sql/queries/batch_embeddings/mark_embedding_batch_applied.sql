UPDATE embedding_batches
SET applied_at = now(), texts_written = :texts_written, texts_failed = :texts_failed,
    error = coalesce(:error, error), updated_at = now()
WHERE id = :id
