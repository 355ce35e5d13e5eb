-- Coverage of :model: chunks without a vector of their current text, and a few of their ids.
SELECT count(*) AS missing,
       (SELECT count(*) FROM document_chunks) AS total,
       (array_agg(c.id ORDER BY c.id))[1:10] AS sample
FROM document_chunks c
WHERE NOT EXISTS (
    SELECT 1 FROM chunk_embeddings e
    WHERE e.chunk_id = c.id AND e.model = :model AND e.content_sha256 = c.content_sha256
)
