-- Which of these (key, content hash) pairs of one source a retention sweep has deleted.
SELECT t.source_key, t.content_sha256
FROM retention_tombstones t
JOIN unnest(CAST(:keys AS text[]), CAST(:hashes AS text[])) AS k (source_key, content_sha256)
  ON t.source_key = k.source_key AND t.content_sha256 = k.content_sha256
WHERE t.source = :source
