-- What the next batch of a real sweep would delete, recorded as dry-run audit rows; deletes nothing.
WITH victims AS (
    SELECT p.*, d.source, d.source_key
    FROM provenance p
    JOIN source_documents d ON d.id = p.content_id
    WHERE is_expired(p, :as_of)
      AND (p.expires_at, p.content_id) > (:after_expires_at, :after_id)
    ORDER BY p.expires_at, p.content_id
    LIMIT :batch_size
),
counts AS (
    SELECT c.document_id, count(DISTINCT c.id) AS chunks, count(e.chunk_id) AS embeddings
    FROM document_chunks c
    LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id
    WHERE c.document_id IN (SELECT content_id FROM victims)
    GROUP BY c.document_id
),
audit AS (
    INSERT INTO retention_audit (
        sweep_id, run_id, dry_run, content_id, source, source_key, source_uri, hash_sha256, license_type,
        rights_holder, acquired_at, retention_years, expired_at, deleted_at, chunks_deleted, embeddings_deleted
    )
    SELECT CAST(:sweep_id AS uuid), :run_id, true, v.content_id, v.source, v.source_key, v.source_uri,
           v.hash_sha256, v.license_type, v.rights_holder, v.acquired_at, v.retention_years, v.expires_at, NULL,
           COALESCE(n.chunks, 0), COALESCE(n.embeddings, 0)
    FROM victims v
    LEFT JOIN counts n ON n.document_id = v.content_id
    RETURNING content_id, expired_at, chunks_deleted, embeddings_deleted
)
SELECT content_id, expired_at, chunks_deleted, embeddings_deleted
FROM audit
ORDER BY expired_at, content_id
