-- Documents whose file or row is gone from the source; one under legal hold stays until the hold is lifted.
-- Their chunks' current vectors (every model's) are kept in deleted_chunk_vectors until :grace_days have
-- passed, or until the document's retention expiry if that is sooner, so that the same text coming back
-- costs no embedding request. With :grace_days 0 nothing is kept. Rows of a dialogue-log table source are
-- never kept: those are personal data an erasure may delete, and no copy may outlive it.
-- Every CTE reads the snapshot before the statement, so the chunks and vectors the cascade deletes at its
-- end are still there to copy.
WITH gone AS (
    DELETE FROM source_documents d
    WHERE d.source = :source AND d.source_key = ANY(:keys)
      AND NOT EXISTS (SELECT 1 FROM provenance p WHERE p.content_id = d.id AND p.legal_hold)
    RETURNING d.id
),
vectors AS (
    -- One row per (model, text): the one kept the shortest, when documents sharing a text expire apart.
    SELECT DISTINCT ON (e.model, e.content_sha256)
           e.model, e.content_sha256, e.embedding, e.token_count,
           LEAST(now() + make_interval(secs => CAST(:grace_days AS double precision) * 86400), p.expires_at)
               AS keep_until
    FROM gone g
    JOIN document_chunks c ON c.document_id = g.id
    JOIN chunk_embeddings e ON e.chunk_id = c.id AND e.content_sha256 = c.content_sha256
    LEFT JOIN provenance p ON p.content_id = g.id
    WHERE CAST(:grace_days AS double precision) > 0
      AND :source !~ '^table:([A-Za-z_][A-Za-z0-9_]*[.])?ai_dialogue_log$'
    ORDER BY e.model, e.content_sha256, keep_until
),
kept AS (
    INSERT INTO deleted_chunk_vectors (model, content_sha256, embedding, token_count, keep_until)
    SELECT v.model, v.content_sha256, v.embedding, v.token_count, v.keep_until
    FROM vectors v
    WHERE v.keep_until > now()
    ON CONFLICT (model, content_sha256) DO UPDATE
    SET embedding = EXCLUDED.embedding,
        token_count = EXCLUDED.token_count,
        deleted_at = now(),
        keep_until = EXCLUDED.keep_until
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS documents, (SELECT count(*) FROM kept) AS vectors_kept
