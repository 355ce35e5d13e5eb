INSERT INTO ingestion_errors (source, source_key, error)
VALUES (:source, :source_key, :error)
ON CONFLICT (source, source_key) DO UPDATE SET error = EXCLUDED.error, last_seen = now()
