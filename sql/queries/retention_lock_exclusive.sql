-- Held until the end of the transaction: one sweep batch at a time, and no ingestion batch meanwhile.
SELECT pg_advisory_xact_lock(:key)
