-- Nearest vectors of the bound model to the bound query: `candidates` rows ranked by the expression the
-- model's halfvec HNSW index serves, re-ranked by exact cosine distance on the stored full vectors. With
-- index scans disabled by the caller and index_type = exact_type, candidates = k, the same text is the
-- exact search. An identifier template filled with psycopg.sql (pipelines.sql.composed): the type slots
-- are the model's validated types.
SELECT c.chunk_id, c.embedding::{exact_type} <=> CAST(%(query)s AS {exact_type}) AS distance
FROM (
    SELECT e.chunk_id, e.embedding
    FROM chunk_embeddings e
    WHERE e.model = %(model)s
    ORDER BY e.embedding::{index_type} <=> CAST(%(query)s AS {index_type})
    LIMIT %(candidates)s
) c
ORDER BY distance, c.chunk_id
LIMIT %(k)s
