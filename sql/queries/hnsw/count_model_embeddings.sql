-- How many vectors a model's index will hold: the build's memory is sized to its graph.
SELECT count(*) FROM chunk_embeddings WHERE model = :model
