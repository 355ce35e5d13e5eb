-- Delete the locked documents (chunks, embeddings and provenance follow by cascade), writing one audit row
-- and one tombstone per document in the same statement. Every CTE reads the same snapshot, so the counts
-- and the provenance copied into the audit are those of the rows being deleted.
WITH counts AS (
    SELECT c.document_id, count(DISTINCT c.id) AS chunks, count(e.chunk_id) AS embeddings
    FROM document_chunks c
    LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id
    WHERE c.document_id = ANY(CAST(:ids AS bigint[]))
    GROUP BY c.document_id
),
deleted AS (
    DELETE FROM source_documents d
    WHERE d.id = ANY(CAST(:ids AS bigint[]))
    RETURNING d.id, d.source, d.source_key, d.content_sha256
),
audit AS (
    INSERT INTO retention_audit (
        sweep_id, run_id, dry_run, content_id, source, source_key, source_uri, hash_sha256, license_type,
        rights_holder, acquired_at, retention_years, expired_at, deleted_at, chunks_deleted, embeddings_deleted
    )
    SELECT CAST(:sweep_id AS uuid), :run_id, false, x.id, x.source, x.source_key, p.source_uri, p.hash_sha256,
           p.license_type, p.rights_holder, p.acquired_at, p.retention_years, p.expires_at, now(),
           COALESCE(n.chunks, 0), COALESCE(n.embeddings, 0)
    FROM deleted x
    JOIN provenance p ON p.content_id = x.id
    LEFT JOIN counts n ON n.document_id = x.id
    RETURNING content_id, chunks_deleted, embeddings_deleted
),
tombstones AS (
    INSERT INTO retention_tombstones (source, source_key, content_sha256, deleted_at, sweep_id)
    SELECT x.source, x.source_key, x.content_sha256, now(), CAST(:sweep_id AS uuid)
    FROM deleted x
    ON CONFLICT (source, source_key, content_sha256)
    DO UPDATE SET deleted_at = EXCLUDED.deleted_at, sweep_id = EXCLUDED.sweep_id
)
SELECT count(*) AS documents,
       COALESCE(sum(chunks_deleted), 0) AS chunks,
       COALESCE(sum(embeddings_deleted), 0) AS embeddings
FROM audit
