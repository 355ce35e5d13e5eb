INSERT INTO embedding_batch_requests (batch, custom_id, content_sha256s)
VALUES (:batch, :custom_id, CAST(:content_sha256s AS text[]))
