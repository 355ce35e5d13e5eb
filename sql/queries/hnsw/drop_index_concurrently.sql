-- An identifier template filled with psycopg.sql (pipelines.sql.composed); the index name comes from
-- pipelines.lib.vector_index (validated).
DROP INDEX CONCURRENTLY IF EXISTS {index_name}
