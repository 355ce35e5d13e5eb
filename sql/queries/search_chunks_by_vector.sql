-- Nearest chunks of :model to :query through the model's HNSW index: the ORDER BY expression and the
-- model predicate repeat the index's own, {vector_type} being the model's validated vector type.
SELECT e.chunk_id, e.embedding::{vector_type} <=> CAST(:query AS {vector_type}) AS distance,
       d.source, d.source_key, d.title, c.chunk_index, c.content
FROM chunk_embeddings e
JOIN document_chunks c ON c.id = e.chunk_id
JOIN source_documents d ON d.id = c.document_id
WHERE e.model = :model
ORDER BY e.embedding::{vector_type} <=> CAST(:query AS {vector_type})
LIMIT :k
