-- Content hashes already on their way through a batch that has not been applied yet.
SELECT DISTINCT unnest(r.content_sha256s)
FROM embedding_batch_requests r
JOIN embedding_batches b ON b.id = r.batch
WHERE b.model = :model AND b.applied_at IS NULL
