-- Write the computed days, replacing any earlier row of the same day. :rows is a jsonb array of
-- objects keyed by column name, so that a range of any length is one statement.
INSERT INTO rag_metrics_history (
    date, total_queries, unique_users, citation_count, citation_rate, unique_sources_count,
    latency_p50_ms, latency_p95_ms, latency_p99_ms, total_cost, cost_per_answer,
    average_relevance_score, positive_votes_rate, slo_compliance, computed_at, dagster_run_id
)
SELECT
    r.date, r.total_queries, r.unique_users, r.citation_count, r.citation_rate, r.unique_sources_count,
    r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms, r.total_cost, r.cost_per_answer,
    r.average_relevance_score, r.positive_votes_rate, r.slo_compliance, now(), :run_id
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
    date date,
    total_queries integer,
    unique_users integer,
    citation_count integer,
    citation_rate double precision,
    unique_sources_count integer,
    latency_p50_ms double precision,
    latency_p95_ms double precision,
    latency_p99_ms double precision,
    total_cost numeric,
    cost_per_answer numeric,
    average_relevance_score double precision,
    positive_votes_rate double precision,
    slo_compliance jsonb
)
ON CONFLICT (date) DO UPDATE SET
    total_queries = EXCLUDED.total_queries,
    unique_users = EXCLUDED.unique_users,
    citation_count = EXCLUDED.citation_count,
    citation_rate = EXCLUDED.citation_rate,
    unique_sources_count = EXCLUDED.unique_sources_count,
    latency_p50_ms = EXCLUDED.latency_p50_ms,
    latency_p95_ms = EXCLUDED.latency_p95_ms,
    latency_p99_ms = EXCLUDED.latency_p99_ms,
    total_cost = EXCLUDED.total_cost,
    cost_per_answer = EXCLUDED.cost_per_answer,
    average_relevance_score = EXCLUDED.average_relevance_score,
    positive_votes_rate = EXCLUDED.positive_votes_rate,
    slo_compliance = EXCLUDED.slo_compliance,
    computed_at = EXCLUDED.computed_at,
    dagster_run_id = EXCLUDED.dagster_run_id
