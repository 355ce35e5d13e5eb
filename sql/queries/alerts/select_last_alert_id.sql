SELECT coalesce(max(id), 0) FROM alerts_sent
