-- Kept vectors of deleted chunks whose grace period is over: past their own keep_until, or deleted longer
-- ago than the grace period now configured (a shortened period applies to what is already kept).
DELETE FROM deleted_chunk_vectors
WHERE keep_until <= now()
   OR deleted_at <= now() - make_interval(secs => CAST(:grace_days AS double precision) * 86400)
