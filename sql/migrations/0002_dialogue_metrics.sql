-- The RAG dialogue log (seed 001) and the daily metrics computed from it (SPEC section 5).

CREATE TABLE ai_dialogue_log (
    id                 bigserial PRIMARY KEY,
    user_id            text        NOT NULL,
    session_id         text,
    query              text        NOT NULL,
    response           text,
    model_used         text,
    -- An array of {source, sourceType, excerpt, confidence, timestamp}. Left unconstrained on purpose:
    -- producers do write null, {} or strings here, and the metrics must count those as "no citation"
    -- rather than the insert failing and the dialogue being lost.
    citations          jsonb,
    -- Per-answer share of the response backed by citations, as logged by the app (seed 001).
    -- The daily citation_rate does not use it: SPEC section 5 derives it from `citations`.
    citation_rate      double precision CHECK (citation_rate BETWEEN 0 AND 100),
    latency_ms         integer     CHECK (latency_ms >= 0),
    -- Every answer has a known cost when it is logged (0 for cache hits), so totals never go unknown.
    token_cost_jpy     numeric(12, 4) NOT NULL DEFAULT 0 CHECK (token_cost_jpy >= 0),
    relevance_score    double precision CHECK (relevance_score BETWEEN 0 AND 1),
    user_feedback      smallint    CHECK (user_feedback IN (-1, 0, 1)),
    temperature        double precision,
    prompt_tokens      integer     CHECK (prompt_tokens >= 0),
    completion_tokens  integer     CHECK (completion_tokens >= 0),
    total_tokens       integer     CHECK (total_tokens >= 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);
-- The daily metrics scan is a range on created_at; a b-tree keeps a one-day recompute from reading
-- a year of log, and a backfill reads its window in order.
CREATE INDEX ai_dialogue_log_created_at_idx ON ai_dialogue_log (created_at);
CREATE INDEX ai_dialogue_log_user_created_idx ON ai_dialogue_log (user_id, created_at);

-- One row per Asia/Tokyo day. Rates and percentiles are stored unrounded so that what the UI plots
-- is exactly what percentile_cont and the averages produced.
CREATE TABLE rag_metrics_history (
    date                     date        PRIMARY KEY,
    total_queries            integer     NOT NULL,
    unique_users             integer     NOT NULL,
    citation_count           integer     NOT NULL,
    citation_rate            double precision,
    unique_sources_count     integer     NOT NULL,
    latency_p50_ms           double precision,
    latency_p95_ms           double precision,
    latency_p99_ms           double precision,
    total_cost               numeric     NOT NULL,
    cost_per_answer          numeric,
    average_relevance_score  double precision,
    positive_votes_rate      double precision,
    slo_compliance           jsonb       NOT NULL,
    computed_at              timestamptz NOT NULL DEFAULT now(),
    dagster_run_id           text
);
-- Dashboards list the days that missed their SLOs.
CREATE INDEX rag_metrics_history_overall_met_idx
    ON rag_metrics_history (((slo_compliance ->> 'overallMet')::boolean), date);
