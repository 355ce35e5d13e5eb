-- Which chunks still need a vector for a model, in one place, for every query that asks: the paged reads of
-- an embedding run, its totals and estimates, the Batch API plan, the coverage counts. Set-returning SQL
-- functions, neither STRICT nor VOLATILE, so the planner inlines them into the calling query: its own
-- conditions (a content-hash range, a token range) still reach document_chunks_sha_idx, and the NOT EXISTS
-- stay anti-joins on the primary keys. (A scalar boolean function would not be inlined: its body has
-- sub-selects, and it would run once per row.) Arguments are named apart from any column (`for_model`),
-- since inside a SQL function a column of the same name would win.

-- Chunks without a vector of their current text for `for_model`.
CREATE FUNCTION chunks_without_embedding(for_model text) RETURNS SETOF document_chunks
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT c.*
    FROM document_chunks c
    WHERE NOT EXISTS (
            SELECT 1 FROM chunk_embeddings e
            WHERE e.chunk_id = c.id AND e.model = for_model AND e.content_sha256 = c.content_sha256)
$$;

-- Of those, the chunks an embedding run sends: minus the abandoned ones, whose current text already failed
-- `max_attempts` times for `for_model` (with `max_attempts` 0: minus every chunk with a recorded failure).
CREATE FUNCTION chunks_to_embed(for_model text, max_attempts integer) RETURNS SETOF document_chunks
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT c.*
    FROM chunks_without_embedding(for_model) c
    WHERE NOT EXISTS (
            SELECT 1 FROM embedding_errors x
            WHERE x.chunk_id = c.id AND x.model = for_model AND x.content_sha256 = c.content_sha256
              AND x.attempts >= max_attempts)
$$;
