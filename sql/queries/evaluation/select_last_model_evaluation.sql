-- A model's latest stored score on a question set and k, from the evaluation asset or an earlier gate.
SELECT questions, k, recall_at_k, mrr, evaluated_at
FROM retrieval_evaluations
WHERE model = :model AND question_digest = :question_digest AND k = :k
ORDER BY id DESC
LIMIT 1
