-- The evaluation asset's previous score on the same question set and k, before `before_id`, whichever model
-- was active then: a drop caused by a forced model switch, a chunking change or a corpus change all count.
SELECT model, questions, k, recall_at_k, mrr, run_id, evaluated_at
FROM retrieval_evaluations
WHERE question_digest = :question_digest AND purpose = 'asset' AND k = :k AND id < :before_id
ORDER BY id DESC
LIMIT 1
