-- Kept vectors of deleted documents whose retention ended by the sweep's time (keep_until is never later
-- than the document's expiry): expired content must not survive in the cache either.
DELETE FROM deleted_chunk_vectors WHERE keep_until <= :as_of
