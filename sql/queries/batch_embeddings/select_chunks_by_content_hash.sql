SELECT id, content_sha256, token_count
FROM document_chunks
WHERE content_sha256 = ANY(:shas)
ORDER BY id
