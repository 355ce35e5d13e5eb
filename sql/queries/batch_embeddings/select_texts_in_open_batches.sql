-- Of the content hashes :shas (a page of texts to submit), those already on their way through a batch of
-- :model that has not been applied yet.
SELECT DISTINCT t.sha
FROM embedding_batch_requests r
JOIN embedding_batches b ON b.id = r.batch
CROSS JOIN unnest(r.content_sha256s) AS t(sha)
WHERE b.model = :model AND b.applied_at IS NULL
  AND t.sha = ANY(CAST(:shas AS text[]))
