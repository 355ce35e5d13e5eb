SELECT id, day, metric, severity, status FROM alerts_sent WHERE id > :after_id ORDER BY day, metric
