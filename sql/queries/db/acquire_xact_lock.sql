-- Held until the end of the transaction.
SELECT pg_advisory_xact_lock(:key)
