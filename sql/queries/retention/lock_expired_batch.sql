-- The next batch of expired, unheld documents after the keyset position, locked for deletion. FOR UPDATE
-- re-checks a row changed meanwhile, so a legal hold committed while we waited keeps its document.
-- Provenance is locked first and its documents then by primary key: a join of the two in one locking scan
-- is planned as a scan of every document on each batch.
WITH victims AS (
    SELECT p.content_id, p.expires_at
    FROM provenance p
    WHERE is_expired(p, :as_of)
      AND (p.expires_at, p.content_id) > (:after_expires_at, :after_id)
    ORDER BY p.expires_at, p.content_id
    LIMIT :batch_size
    FOR UPDATE OF p
),
documents AS (
    SELECT d.id
    FROM source_documents d
    WHERE d.id = ANY(ARRAY(SELECT content_id FROM victims))
    FOR UPDATE OF d
)
SELECT v.content_id, v.expires_at
FROM victims v
JOIN documents x ON x.id = v.content_id
ORDER BY v.expires_at, v.content_id
