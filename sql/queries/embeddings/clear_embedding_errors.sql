DELETE FROM embedding_errors WHERE model = :model AND chunk_id = ANY(:chunk_ids)
