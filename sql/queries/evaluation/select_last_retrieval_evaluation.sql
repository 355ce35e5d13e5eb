-- The previous evaluation-asset score of a model on the same question set and k, before `before_id`.
SELECT questions, k, recall_at_k, mrr, run_id, evaluated_at
FROM retrieval_evaluations
WHERE model = :model AND question_digest = :question_digest AND purpose = 'asset' AND k = :k
  AND id < :before_id
ORDER BY id DESC
LIMIT 1
