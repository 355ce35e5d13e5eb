SELECT custom_id, content_sha256s FROM embedding_batch_requests WHERE batch = :batch
