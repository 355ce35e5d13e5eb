-- The application's retrieval contract (migration 0017), one call: the k nearest chunks of the model the
-- query was embedded with, nearest first. psycopg parameters, so that it runs on a SQLAlchemy connection
-- and on a plain psycopg one alike. The vector goes as a binary float8[] (psycopg's b placeholder): no
-- pgvector adapter on the caller's side, and neither side formats or parses 1,536 numbers as text.
SELECT chunk_id, document_key, chunk_index, title, heading_path, content, similarity, source, metadata
FROM retrieve_chunks(
    CAST(%(query)b AS vector), %(model)s, %(k)s,
    source_name => %(source)s, source_type => %(source_type)s,
    metadata_filter => CAST(%(metadata)s AS jsonb), min_similarity => %(min_similarity)s)
