-- Before a finished request's COPY, in one round trip: keep the chunks that still hold the text the vectors
-- were made from (a chunk deleted or rewritten while the request was in flight is left out), hold them with
-- KEY SHARE so they cannot be deleted before the COPY commits, and clear what the COPY replaces: their old
-- vectors for the model and their recorded errors. Returns the ids kept.
WITH kept AS (
    SELECT c.id
    FROM document_chunks c
    JOIN unnest(CAST(:chunk_ids AS bigint[]), CAST(:content_sha256s AS text[])) AS w(id, sha)
      ON w.id = c.id AND w.sha = c.content_sha256
    FOR KEY SHARE OF c
),
replaced AS (
    DELETE FROM chunk_embeddings e
    USING kept
    WHERE e.model = :model AND e.chunk_id = kept.id
),
cleared AS (
    DELETE FROM embedding_errors x
    USING kept
    WHERE x.model = :model AND x.chunk_id = kept.id
)
SELECT id FROM kept
