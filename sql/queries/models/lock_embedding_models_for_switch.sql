-- Rows a switch changes, locked so that a concurrent switch or re-opening waits for this one.
SELECT name, status
FROM embedding_models
WHERE status = 'active' OR name = :name
ORDER BY name
FOR UPDATE
