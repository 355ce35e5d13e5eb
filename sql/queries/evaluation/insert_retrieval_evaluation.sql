-- One score of one model on one question set.
INSERT INTO retrieval_evaluations
    (model, purpose, question_set, question_digest, questions, k, recall_at_k, mrr, run_id)
VALUES (:model, :purpose, :question_set, :question_digest, :questions, :k, :recall_at_k, :mrr, :run_id)
RETURNING id
