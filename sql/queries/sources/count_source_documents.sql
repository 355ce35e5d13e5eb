SELECT count(*) FROM source_documents
