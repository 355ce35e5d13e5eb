-- Held across transactions until released (or the session ends); false at once when another session holds it.
SELECT pg_try_advisory_lock(:key)
