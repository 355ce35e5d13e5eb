-- One model's vector index: a partial expression index, so that each model's vectors get their own
-- fixed dimension. An identifier template filled with psycopg.sql (pipelines.sql.composed) from
-- pipelines.lib.vector_index's validated plan (method, indexed expression, opclass, storage options);
-- DDL takes no bound parameters.
CREATE INDEX CONCURRENTLY IF NOT EXISTS {index_name}
ON chunk_embeddings USING {method} (({index_key}) {opclass}) {options}
WHERE model = {model}
