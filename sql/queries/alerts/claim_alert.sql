-- Claim an alert for delivery; a key already claimed (sent, pending or given up) returns no row.
INSERT INTO alerts_sent (dedup_key, kind, severity, day, metric, value, threshold, job_name, run_id, link, payload)
VALUES (:dedup_key, :kind, :severity, :day, :metric, :value, :threshold, :job_name, :run_id, :link,
        CAST(:payload AS jsonb))
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
