-- Chunks in total, and documents without any chunk (what the every_document_chunked check must see at 0).
SELECT (SELECT count(*) FROM document_chunks) AS chunks,
       (SELECT count(*) FROM source_documents d
         WHERE NOT EXISTS (SELECT 1 FROM document_chunks c WHERE c.document_id = d.id)) AS unchunked
