-- Chunks past each document's new chunk count (document ids paired with their new counts).
DELETE FROM document_chunks c
USING unnest(CAST(:document_ids AS bigint[]), CAST(:chunk_counts AS int[])) AS n(document_id, chunk_count)
WHERE c.document_id = n.document_id AND c.chunk_index >= n.chunk_count
