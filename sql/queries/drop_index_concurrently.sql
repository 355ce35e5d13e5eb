-- {index_name} comes from pipelines.lib.vector_index (validated, quoted).
DROP INDEX CONCURRENTLY IF EXISTS {index_name}
