-- Every kept vector of a deleted chunk. The cache holds document text's vectors, and nothing ties one to an
-- end user, so an erasure cannot tell which might derive from the user's data: it keeps none. The price is
-- that content deleted within the grace period and added back pays its embedding again.
DELETE FROM deleted_chunk_vectors
