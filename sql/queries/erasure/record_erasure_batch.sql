UPDATE erasure_audit
SET rows_deleted = rows_deleted + :rows_deleted,
    batches = batches + 1,
    days = ARRAY(SELECT DISTINCT d FROM unnest(days || CAST(:days AS date[])) AS d ORDER BY d),
    days_recomputed = ARRAY(
        SELECT DISTINCT d FROM unnest(days_recomputed || CAST(:days_recomputed AS date[])) AS d ORDER BY d
    )
WHERE erasure_id = :erasure_id
