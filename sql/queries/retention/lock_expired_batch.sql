-- The next batch of expired, unheld documents after the keyset position, locked for deletion. FOR UPDATE
-- re-checks a row changed meanwhile, so a legal hold committed while we waited keeps its document.
SELECT p.content_id, p.expires_at
FROM provenance p
JOIN source_documents d ON d.id = p.content_id
WHERE is_expired(p, :as_of)
  AND (p.expires_at, p.content_id) > (:after_expires_at, :after_id)
ORDER BY p.expires_at, p.content_id
LIMIT :batch_size
FOR UPDATE OF p, d
