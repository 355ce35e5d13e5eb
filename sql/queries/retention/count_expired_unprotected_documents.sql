-- Expired documents without a legal hold: what a completed sweep as of :as_of must have left at zero.
SELECT count(*)
FROM provenance p
JOIN source_documents d ON d.id = p.content_id
WHERE is_expired(p, :as_of)
