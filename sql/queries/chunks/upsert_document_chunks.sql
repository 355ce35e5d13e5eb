INSERT INTO document_chunks
    (document_id, chunk_index, content, content_sha256, char_start, char_end, token_count, metadata)
VALUES
    (:document_id, :chunk_index, :content, :content_sha256, :char_start, :char_end, :token_count,
     CAST(:metadata AS jsonb))
ON CONFLICT (document_id, chunk_index) DO UPDATE
SET content = EXCLUDED.content,
    content_sha256 = EXCLUDED.content_sha256,
    char_start = EXCLUDED.char_start,
    char_end = EXCLUDED.char_end,
    token_count = EXCLUDED.token_count,
    metadata = EXCLUDED.metadata,
    updated_at = now()
WHERE (document_chunks.content_sha256, document_chunks.char_start, document_chunks.char_end,
       document_chunks.token_count, document_chunks.metadata)
      IS DISTINCT FROM
      (EXCLUDED.content_sha256, EXCLUDED.char_start, EXCLUDED.char_end,
       EXCLUDED.token_count, EXCLUDED.metadata)
