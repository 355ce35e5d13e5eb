-- The configured table, or NULL when it does not exist (never an error).
SELECT to_regclass(:table)
