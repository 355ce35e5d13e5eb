-- The database's clock: the transaction's start time.
SELECT now()
