-- Ingestion batches share the lock among themselves but never run inside a sweep batch, so the tombstones
-- they read cannot be one commit behind the deletions.
SELECT pg_advisory_xact_lock_shared(:key)
