SELECT *
FROM rag_metrics_history
WHERE date = ANY(CAST(:days AS date[]))
ORDER BY date
