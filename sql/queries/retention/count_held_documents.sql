-- Expired documents kept only because of a legal hold.
SELECT count(*)
FROM provenance
WHERE expires_at <= :as_of AND legal_hold
