-- The nearest chunks with their documents: the subquery slot takes hnsw/nearest_embeddings composed with
-- the same model types, so search ranks exactly as the recall check measures.
SELECT r.chunk_id, r.distance, d.source, d.source_key, d.title, c.chunk_index, c.content
FROM ({nearest}) r
JOIN document_chunks c ON c.id = r.chunk_id
JOIN source_documents d ON d.id = c.document_id
ORDER BY r.distance, r.chunk_id
