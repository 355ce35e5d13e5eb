-- The chunks a finished request was for, as they are now: a chunk deleted or rewritten while the request
-- was in flight is left out, and KEY SHARE keeps the rest from being deleted before the COPY commits.
SELECT id, content_sha256
FROM document_chunks
WHERE id = ANY(:chunk_ids)
FOR KEY SHARE
