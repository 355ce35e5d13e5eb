INSERT INTO embedding_model_switches (from_model, to_model, chunks_covered, run_id)
VALUES (:from_model, :to_model, :chunks_covered, :run_id)
