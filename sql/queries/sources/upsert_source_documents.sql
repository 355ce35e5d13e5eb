INSERT INTO source_documents (source, source_key, title, content, content_sha256, metadata)
VALUES (:source, :source_key, :title, :content, :content_sha256, CAST(:metadata AS jsonb))
ON CONFLICT (source, source_key) DO UPDATE
SET title = EXCLUDED.title,
    content = EXCLUDED.content,
    content_sha256 = EXCLUDED.content_sha256,
    metadata = EXCLUDED.metadata,
    updated_at = now()
WHERE (source_documents.content_sha256, source_documents.title, source_documents.metadata)
      IS DISTINCT FROM (EXCLUDED.content_sha256, EXCLUDED.title, EXCLUDED.metadata)
