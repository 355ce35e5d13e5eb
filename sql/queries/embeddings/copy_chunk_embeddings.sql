COPY chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count) FROM STDIN WITH (FORMAT BINARY)
