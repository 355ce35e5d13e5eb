-- Expired documents kept only because of a legal hold.
SELECT count(*)
FROM provenance p
WHERE retention_ended(p, :as_of) AND p.legal_hold
