-- Retrieval quality per evaluation: a labelled question set scored against one model's vectors through the
-- search path readers use. The evaluation asset writes one row per materialization (purpose 'asset'); the
-- model switch's quality gate writes one row per model it compares (purpose 'switch_gate'), so a refused
-- switch keeps both scores. A score is only ever compared with one of the same question set (its digest
-- changes with any edit of the questions).
CREATE TABLE retrieval_evaluations (
    id              bigserial        PRIMARY KEY,
    evaluated_at    timestamptz      NOT NULL DEFAULT now(),
    model           text             NOT NULL,
    purpose         text             NOT NULL CHECK (purpose IN ('asset', 'switch_gate')),
    question_set    text             NOT NULL,  -- the file's name, for people
    question_digest text             NOT NULL,  -- what comparisons match on
    questions       integer          NOT NULL CHECK (questions > 0),
    k               integer          NOT NULL CHECK (k > 0),
    recall_at_k     double precision NOT NULL CHECK (recall_at_k BETWEEN 0 AND 1),
    mrr             double precision NOT NULL CHECK (mrr BETWEEN 0 AND 1),
    run_id          text
);
-- "The last run of this model on this question set", read by every evaluation check.
CREATE INDEX retrieval_evaluations_last_idx ON retrieval_evaluations (question_digest, purpose, k, id DESC);

-- The evaluation check's failures go to the webhook like the other alerts.
ALTER TABLE alerts_sent DROP CONSTRAINT alerts_sent_kind_check;
ALTER TABLE alerts_sent ADD CONSTRAINT alerts_sent_kind_check
    CHECK (kind IN ('metric', 'job_failure', 'embedding_failures', 'retrieval_quality'));
