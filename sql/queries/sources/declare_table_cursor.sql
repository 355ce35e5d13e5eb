-- A cursor over every row of a configured table source: key, title and the text columns, in key order
-- (NULL keys last), so rows sharing a key arrive side by side. WITH HOLD: the commit of the transaction
-- that declares it reads the rows once into the server's own storage (memory up to work_mem, then a temp
-- file) and ends that transaction, its snapshot and its lock on the table; the rows are then fetched a
-- page at a time across the run's later transactions, and the table's writers (and DDL, and vacuum) never
-- wait on the run. An identifier template filled with psycopg.sql (pipelines.sql.composed): the names come
-- from configuration.
DECLARE {cursor} NO SCROLL CURSOR WITH HOLD FOR
SELECT {key_column}, {title_column}, {text_columns} FROM {table} ORDER BY {key_column} ASC NULLS LAST
