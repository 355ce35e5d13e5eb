-- Nearest vectors of the bound model to the bound query: `candidates` rows ranked by the expression the
-- model's index serves (index_key, operator, query_key from pipelines.lib.vector_index), re-ranked by
-- exact cosine distance on the stored full vectors. With index scans disabled by the caller, the exact
-- expression in the index slots and candidates = k, the same text is the exact search. An identifier
-- template filled with psycopg.sql (pipelines.sql.composed).
SELECT c.chunk_id, {exact_key} <=> CAST(%(query)s AS {exact_type}) AS distance
FROM (
    SELECT e.chunk_id, e.embedding
    FROM chunk_embeddings e
    WHERE e.model = %(model)s
    ORDER BY {index_key} {operator} {query_key}
    LIMIT %(candidates)s
) c
ORDER BY distance, c.chunk_id
LIMIT %(k)s
