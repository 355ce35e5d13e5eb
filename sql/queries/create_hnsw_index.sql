-- One model's HNSW index: a partial expression index, so that each model's vectors get their own
-- fixed dimension. Placeholders are filled from pipelines.lib.vector_index (validated, quoted);
-- DDL takes no bound parameters.
CREATE INDEX CONCURRENTLY IF NOT EXISTS {index_name}
ON chunk_embeddings USING hnsw ({column_expr} {opclass})
WHERE model = {model_literal}
