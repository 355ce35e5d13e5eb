-- Opened before the first batch and committed on its own, so that an erasure that stops half way is
-- still on record (completed_at null) with what its committed batches did.
INSERT INTO erasure_audit (erasure_id, run_id, requested_by)
VALUES (:erasure_id, :run_id, :requested_by)
