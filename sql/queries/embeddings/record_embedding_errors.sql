INSERT INTO embedding_errors (chunk_id, model, content_sha256, error, details)
SELECT chunk_id, :model, content_sha256, :error, :details
FROM unnest(CAST(:chunk_ids AS bigint[]), CAST(:content_sha256s AS text[])) AS t(chunk_id, content_sha256)
ON CONFLICT (chunk_id, model) DO UPDATE
SET error = EXCLUDED.error,
    details = EXCLUDED.details,
    -- a different text is a fresh start, the same text one more failed attempt
    attempts = CASE WHEN embedding_errors.content_sha256 = EXCLUDED.content_sha256
                    THEN embedding_errors.attempts + 1 ELSE 1 END,
    content_sha256 = EXCLUDED.content_sha256,
    last_seen = now()
