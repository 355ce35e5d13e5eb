-- The live columns of the configured table.
SELECT attname
FROM pg_attribute
WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped
