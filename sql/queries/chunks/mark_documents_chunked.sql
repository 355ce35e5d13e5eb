UPDATE source_documents d
SET chunked_sha256 = :fingerprint || ':' || d.content_sha256
FROM unnest(CAST(:document_ids AS bigint[]), CAST(:content_sha256s AS text[])) AS n(id, sha)
-- Only if the content is still what was chunked; a concurrent edit is picked up next run.
WHERE d.id = n.id AND d.content_sha256 = n.sha
