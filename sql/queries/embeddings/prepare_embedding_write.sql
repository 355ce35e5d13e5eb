-- Before a finished request's COPY, in one round trip: keep the chunks that still hold the text the vectors
-- were made from (a chunk deleted or rewritten while the request was in flight is left out), hold them with
-- KEY SHARE so they cannot be deleted before the COPY commits, and clear what the COPY replaces: their old
-- vectors for the model and their recorded errors. Returns the ids kept. Every table is reached through
-- `= ANY(array)` on its primary key, so each batch costs index probes whatever the tables' sizes.
WITH kept AS (
    SELECT c.id
    FROM document_chunks c
    JOIN unnest(CAST(:chunk_ids AS bigint[]), CAST(:content_sha256s AS text[])) AS w(id, sha)
      ON w.id = c.id AND w.sha = c.content_sha256
    WHERE c.id = ANY(CAST(:chunk_ids AS bigint[]))
    FOR KEY SHARE OF c
),
kept_ids AS (
    SELECT ARRAY(SELECT id FROM kept) AS ids
),
replaced AS (
    DELETE FROM chunk_embeddings e
    WHERE e.model = :model AND e.chunk_id = ANY(CAST((SELECT ids FROM kept_ids) AS bigint[]))
),
cleared AS (
    DELETE FROM embedding_errors x
    WHERE x.model = :model AND x.chunk_id = ANY(CAST((SELECT ids FROM kept_ids) AS bigint[]))
)
SELECT unnest(ids) AS id FROM kept_ids
