DELETE FROM chunk_embeddings WHERE model = :model AND chunk_id = ANY(:chunk_ids)
