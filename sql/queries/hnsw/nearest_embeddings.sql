-- Nearest vectors of the bound model to the bound query, ranked by the expression the model's HNSW index serves; with
-- index scans disabled by the caller the same text is the exact search. An identifier template filled
-- with psycopg.sql (pipelines.sql.composed): the vector_type slot is the model's validated vector type.
SELECT e.chunk_id, e.embedding::{vector_type} <=> CAST(%(query)s AS {vector_type}) AS distance
FROM chunk_embeddings e
WHERE e.model = %(model)s
ORDER BY e.embedding::{vector_type} <=> CAST(%(query)s AS {vector_type})
LIMIT %(k)s
