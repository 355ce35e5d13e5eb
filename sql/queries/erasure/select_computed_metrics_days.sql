-- The days among :days that rag_metrics_history has a row for, with the SLO document the row was
-- computed with (its targets are kept when the day is recomputed). Days never computed are left to
-- the metrics job, which reads the log as it is then.
SELECT date, slo_compliance
FROM rag_metrics_history
WHERE date = ANY(CAST(:days AS date[]))
ORDER BY date
