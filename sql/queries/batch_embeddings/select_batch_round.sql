-- The latest batches of a model: whether any is still open, and whether the newest was cancelled.
SELECT count(*) AS batches,
       count(*) FILTER (WHERE applied_at IS NULL) AS open,
       max(id) AS latest,
       (SELECT status FROM embedding_batches WHERE model = :model ORDER BY id DESC LIMIT 1) AS latest_status
FROM embedding_batches
WHERE model = :model AND status <> 'abandoned'
