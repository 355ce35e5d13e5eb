UPDATE erasure_audit
SET completed_at = now()
WHERE erasure_id = :erasure_id
RETURNING rows_deleted, batches, days, days_recomputed, started_at, completed_at
