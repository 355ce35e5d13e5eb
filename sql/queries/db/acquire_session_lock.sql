-- Held across transactions until released (or the session ends).
SELECT pg_advisory_lock(:key)
