SELECT id, content, content_sha256
FROM source_documents
WHERE chunked_sha256 IS DISTINCT FROM (:fingerprint || ':' || content_sha256)
  AND id > :after_id
ORDER BY id
LIMIT :limit
