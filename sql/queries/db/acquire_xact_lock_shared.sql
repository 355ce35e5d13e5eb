-- Held until the end of the transaction; shared with other shared holders, exclusive of the exclusive one.
SELECT pg_advisory_xact_lock_shared(:key)
