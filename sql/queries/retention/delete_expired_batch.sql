-- Delete the locked documents with their chunks, embeddings, recorded embedding errors and provenance, writing
-- one audit row and one tombstone per document in the same statement. Every CTE reads the same snapshot, so
-- the counts and the provenance copied into the audit are those of the rows being deleted.
-- The children go set-based before their parents: each ON DELETE CASCADE trigger still fires once per parent
-- row, but then finds nothing left to delete, which costs about half of deleting row by row. The embeddings
-- and errors are reached through `= ANY(chunk ids)` on their primary keys: a join on chunk_id would be
-- planned as a scan of the whole embeddings table. The foreign keys' cascades stay as the safety net for a
-- chunk written after this statement's snapshot.
WITH gone_chunks AS (
    DELETE FROM document_chunks c
    WHERE c.document_id = ANY(CAST(:ids AS bigint[]))
    RETURNING c.id, c.document_id, c.content_sha256
),
chunk_ids AS (
    SELECT ARRAY(SELECT id FROM gone_chunks) AS ids
),
gone_embeddings AS (
    DELETE FROM chunk_embeddings e
    WHERE e.chunk_id = ANY(CAST((SELECT ids FROM chunk_ids) AS bigint[]))
    RETURNING e.chunk_id
),
-- Vectors of the same texts kept from documents deleted earlier (deleted_chunk_vectors), whatever the model:
-- swept content survives nowhere. The swept chunks' own vectors never go there.
gone_kept_vectors AS (
    DELETE FROM deleted_chunk_vectors k
    WHERE k.content_sha256 IN (SELECT content_sha256 FROM gone_chunks)
),
gone_errors AS (
    DELETE FROM embedding_errors x
    WHERE x.chunk_id = ANY(CAST((SELECT ids FROM chunk_ids) AS bigint[]))
),
gone_provenance AS (
    DELETE FROM provenance p
    WHERE p.content_id = ANY(CAST(:ids AS bigint[]))
    RETURNING p.*
),
-- Counted apart and by hashing: one join counting distinct chunks per document sorted every deleted chunk.
chunk_counts AS (
    SELECT c.document_id, count(*) AS chunks
    FROM gone_chunks c
    GROUP BY c.document_id
),
embedding_counts AS (
    SELECT c.document_id, count(*) AS embeddings
    FROM gone_embeddings e
    JOIN gone_chunks c ON c.id = e.chunk_id
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
           COALESCE(n.chunks, 0), COALESCE(m.embeddings, 0)
    FROM deleted x
    JOIN gone_provenance p ON p.content_id = x.id
    LEFT JOIN chunk_counts n ON n.document_id = x.id
    LEFT JOIN embedding_counts m ON m.document_id = x.id
    -- Audit ids follow the sweep's order, whatever order the joins produce.
    ORDER BY p.expires_at, x.id
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
