-- Unheld documents expiring in (:as_of, :until], soonest first; `total` counts all of them, not just the page.
SELECT p.content_id, d.source, d.source_key, p.license_type, p.retention_years, p.expires_at,
       count(*) OVER () AS total
FROM provenance p
JOIN source_documents d ON d.id = p.content_id
WHERE is_expired(p, :until) AND NOT retention_ended(p, :as_of)
ORDER BY p.expires_at, p.content_id
LIMIT :limit
