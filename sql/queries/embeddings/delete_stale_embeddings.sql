-- Embeddings of text a chunk no longer has; readers must never be served them.
DELETE FROM chunk_embeddings e
USING document_chunks c
WHERE e.chunk_id = c.id AND e.model = :model AND e.content_sha256 <> c.content_sha256
