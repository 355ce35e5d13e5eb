-- Nearest vectors of :model to :query, ranked by the expression the model's HNSW index serves; with
-- index scans disabled by the caller the same text is the exact search.
SELECT e.chunk_id, e.embedding::{vector_type} <=> CAST(:query AS {vector_type}) AS distance
FROM chunk_embeddings e
WHERE e.model = :model
ORDER BY e.embedding::{vector_type} <=> CAST(:query AS {vector_type})
LIMIT :k
