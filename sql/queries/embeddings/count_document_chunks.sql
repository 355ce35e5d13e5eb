SELECT count(*) FROM document_chunks
