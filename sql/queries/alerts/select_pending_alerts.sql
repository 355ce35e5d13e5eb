SELECT id, dedup_key, payload, attempts
FROM alerts_sent
WHERE status = 'pending'
ORDER BY id
LIMIT :limit
