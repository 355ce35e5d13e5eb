SELECT chunk_id, embedding
FROM chunk_embeddings
WHERE model = :model
ORDER BY random()
LIMIT :n
