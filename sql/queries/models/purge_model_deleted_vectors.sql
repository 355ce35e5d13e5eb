-- A retired model's kept vectors of deleted chunks go with its other vectors.
DELETE FROM deleted_chunk_vectors WHERE model = :model
