-- Before a finished request's COPY, in one round trip: keep the chunks that still hold the text the vectors
-- were made from (a chunk deleted or rewritten while the request was in flight is left out), hold them with
-- KEY SHARE so they cannot be deleted before the COPY commits, and clear what the COPY replaces: their old
-- vectors for the model and their recorded errors. Returns the ids left out, usually none. Every table is
-- reached through `= ANY(array)` on its primary key, so each batch costs index probes whatever the tables'
-- sizes. The arrays are bound in binary (the `b` placeholders; run with pipelines.sql.execute_composed): as
-- text, quoting thousands of content hashes cost the client more than the server spends on this query.
WITH wanted AS (
    SELECT w.id, w.sha
    FROM unnest(CAST(%(chunk_ids)b AS bigint[]), CAST(%(content_sha256s)b AS text[])) AS w(id, sha)
),
kept AS (
    SELECT c.id
    FROM document_chunks c
    JOIN wanted w ON w.id = c.id AND w.sha = c.content_sha256
    WHERE c.id = ANY(CAST(%(chunk_ids)b AS bigint[]))
    FOR KEY SHARE OF c
),
kept_ids AS (
    SELECT ARRAY(SELECT id FROM kept) AS ids
),
replaced AS (
    DELETE FROM chunk_embeddings e
    WHERE e.model = %(model)s AND e.chunk_id = ANY(CAST((SELECT ids FROM kept_ids) AS bigint[]))
),
cleared AS (
    DELETE FROM embedding_errors x
    WHERE x.model = %(model)s AND x.chunk_id = ANY(CAST((SELECT ids FROM kept_ids) AS bigint[]))
)
SELECT w.id
FROM wanted w
WHERE NOT EXISTS (SELECT FROM kept k WHERE k.id = w.id)
