-- The SQL of docs/querying.md, run there as the application's login:
--     .venv/bin/python -m demo.app_login psql -f docs/querying.sql
\set ON_ERROR_STOP on
\pset footer off

-- The model to embed queries with, and a query vector: here the stored vector of one chunk ("more like this");
-- an application binds the vector it got from the model instead.
SELECT name AS model, dimensions, provider, provider_model FROM active_embedding_model() \gset
\echo model :model
SELECT e.embedding AS query_vector
FROM active_chunk_embeddings e
JOIN document_chunks c ON c.id = e.chunk_id
JOIN source_documents d ON d.id = c.document_id
WHERE d.source_key = 'en/lesson-materials.md' AND c.chunk_index = 0 \gset

-- The 3 nearest chunks of the markdown tree.
SELECT document_key, chunk_index, round(similarity::numeric, 3) AS similarity, title, heading_path
FROM retrieve_chunks(:'query_vector', :'model', k => 3, source_type => 'markdown');

-- Documents whose metadata (frontmatter) contains a tag, above a similarity; and one SOURCE_TABLES table.
SELECT document_key, round(similarity::numeric, 3) AS similarity, metadata -> 'tags' AS tags
FROM retrieve_chunks(:'query_vector', :'model', k => 5,
                     metadata_filter => '{"tags": ["mentors"]}', min_similarity => 0.1);
SELECT source, document_key, title
FROM retrieve_chunks(:'query_vector', :'model', k => 2, source_name => 'table:question_templates');

-- The plan of each: the scans of the statement retrieve_chunks runs, per filter kind.
SELECT 'none' AS filter, ltrim(plan, ' ->') AS scan
FROM explain_retrieve_chunks(:'query_vector', :'model', 3) AS plan WHERE plan ~ 'Scan'
UNION ALL
SELECT 'source_name', ltrim(plan, ' ->')
FROM explain_retrieve_chunks(:'query_vector', :'model', 3, source_name => 'local') AS plan WHERE plan ~ 'Scan'
UNION ALL
SELECT 'source_type', ltrim(plan, ' ->')
FROM explain_retrieve_chunks(:'query_vector', :'model', 3, source_type => 'markdown') AS plan WHERE plan ~ 'Scan'
UNION ALL
SELECT 'metadata_filter', ltrim(plan, ' ->')
FROM explain_retrieve_chunks(:'query_vector', :'model', 3, metadata_filter => '{"tags": ["mentors"]}') AS plan
WHERE plan ~ 'Scan'
UNION ALL
SELECT 'min_similarity', ltrim(plan, ' ->')
FROM explain_retrieve_chunks(:'query_vector', :'model', 3, min_similarity => 0.1) AS plan WHERE plan ~ 'Scan';

-- What the application role still cannot do: read the vectors of every model.
SELECT has_table_privilege('chunk_embeddings', 'SELECT') AS may_read_chunk_embeddings;
