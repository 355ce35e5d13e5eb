-- Nearest chunks of the bound model to the bound query through the model's HNSW index: the ORDER BY expression and the
-- model predicate repeat the index's own. An identifier template filled with psycopg.sql
-- (pipelines.sql.composed): the vector_type slot is the model's validated vector type.
SELECT e.chunk_id, e.embedding::{vector_type} <=> CAST(%(query)s AS {vector_type}) AS distance,
       d.source, d.source_key, d.title, c.chunk_index, c.content
FROM chunk_embeddings e
JOIN document_chunks c ON c.id = e.chunk_id
JOIN source_documents d ON d.id = c.document_id
WHERE e.model = %(model)s
ORDER BY e.embedding::{vector_type} <=> CAST(%(query)s AS {vector_type})
LIMIT %(k)s
