-- A batch that never reached the API (upload or creation failed, or the run died in between) holds no
-- texts any more: they are pending again for the next submission.
UPDATE embedding_batches
SET status = 'abandoned', error = :error, applied_at = now(), texts_written = 0, texts_failed = 0,
    updated_at = now()
WHERE applied_at IS NULL AND batch_id IS NULL
  AND (id = :id OR (CAST(:id AS bigint) IS NULL AND model = :model AND updated_at < now() - make_interval(secs => :older_than_s)))
RETURNING id
