-- Documents whose file or row is gone from the source; one under legal hold stays until the hold is lifted.
DELETE FROM source_documents d
WHERE d.source = :source AND d.source_key = ANY(:keys)
  AND NOT EXISTS (SELECT 1 FROM provenance p WHERE p.content_id = d.id AND p.legal_hold)
