-- The plan of the statement retrieve_chunks runs for the same arguments (migration 0017).
SELECT * FROM explain_retrieve_chunks(
    CAST(%(query)b AS vector), %(model)s, %(k)s,
    source_name => %(source)s, source_type => %(source_type)s,
    metadata_filter => CAST(%(metadata)s AS jsonb), min_similarity => %(min_similarity)s)
