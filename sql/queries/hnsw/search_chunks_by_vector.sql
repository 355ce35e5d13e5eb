-- Nearest chunks of the bound model to the bound query: `candidates` rows through the model's halfvec HNSW
-- index (the inner ORDER BY expression and the model predicate repeat the index's own), re-ranked by exact
-- cosine distance on the stored full vectors. With index scans disabled and index_type = exact_type,
-- candidates = k, it is the exact search. An identifier template filled with psycopg.sql
-- (pipelines.sql.composed): the type slots are the model's validated types.
SELECT r.chunk_id, r.distance, d.source, d.source_key, d.title, c.chunk_index, c.content
FROM (
    SELECT n.chunk_id, n.embedding::{exact_type} <=> CAST(%(query)s AS {exact_type}) AS distance
    FROM (
        SELECT e.chunk_id, e.embedding
        FROM chunk_embeddings e
        WHERE e.model = %(model)s
        ORDER BY e.embedding::{index_type} <=> CAST(%(query)s AS {index_type})
        LIMIT %(candidates)s
    ) n
    ORDER BY distance, n.chunk_id
    LIMIT %(k)s
) r
JOIN document_chunks c ON c.id = r.chunk_id
JOIN source_documents d ON d.id = c.document_id
ORDER BY r.distance, r.chunk_id
