-- The metrics of every day in [:start_day, :end_day) (local days of :tz), in one pass over the
-- dialogue log window [:window_start, :window_end). Days without rows still get a row, so that a
-- recompute replaces every day it was asked for.
WITH days AS (
    SELECT CAST(:start_day AS date) + offs AS day
    FROM generate_series(0, CAST(:end_day AS date) - CAST(:start_day AS date) - 1) AS offs
),
dialogue AS (
    -- One row per citation (or one row for an answer without any), so that distinct sources come
    -- out of the same scan; `is_first` marks the one row per answer the per-answer aggregates read.
    SELECT
        (l.created_at AT TIME ZONE :tz)::date AS day,
        l.user_id,
        l.latency_ms,
        l.token_cost_jpy,
        l.relevance_score,
        l.user_feedback,
        coalesce(jsonb_array_length(a.citations), 0) AS n_citations,
        c.citation ->> 'source' AS source,
        c.ord IS NULL OR c.ord = 1 AS is_first
    FROM ai_dialogue_log AS l
    -- null, objects and strings are all "no citations" (SPEC section 5)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(l.citations) = 'array' THEN l.citations END AS citations
    ) AS a
    LEFT JOIN LATERAL jsonb_array_elements(a.citations) WITH ORDINALITY AS c(citation, ord) ON true
    WHERE l.created_at >= :window_start AND l.created_at < :window_end
),
per_day AS (
    SELECT
        day,
        count(*) FILTER (WHERE is_first) AS total_queries,
        count(DISTINCT user_id) AS unique_users,
        coalesce(sum(n_citations) FILTER (WHERE is_first), 0) AS citation_count,
        100.0::float8 * count(*) FILTER (WHERE is_first AND n_citations > 0)
            / count(*) FILTER (WHERE is_first) AS citation_rate,
        count(DISTINCT source) AS unique_sources_count,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
            FILTER (WHERE is_first) AS latency_percentiles,
        coalesce(sum(token_cost_jpy) FILTER (WHERE is_first), 0) AS total_cost,
        -- summed as numeric so the mean does not depend on the order rows are read in: a day's value
        -- is then identical whether it was computed alone or inside a backfill
        avg(relevance_score::numeric) FILTER (WHERE is_first)::float8 AS average_relevance_score,
        100.0::float8 * count(*) FILTER (WHERE is_first AND user_feedback = 1)
            / nullif(count(*) FILTER (WHERE is_first AND user_feedback IN (-1, 1)), 0) AS positive_votes_rate
    FROM dialogue
    GROUP BY day
)
SELECT
    days.day AS date,
    coalesce(p.total_queries, 0) AS total_queries,
    coalesce(p.unique_users, 0) AS unique_users,
    coalesce(p.citation_count, 0) AS citation_count,
    p.citation_rate,
    coalesce(p.unique_sources_count, 0) AS unique_sources_count,
    p.latency_percentiles[1] AS latency_p50_ms,
    p.latency_percentiles[2] AS latency_p95_ms,
    p.latency_percentiles[3] AS latency_p99_ms,
    coalesce(p.total_cost, 0) AS total_cost,
    p.total_cost / nullif(p.total_queries, 0) AS cost_per_answer,
    p.average_relevance_score,
    p.positive_votes_rate
FROM days
LEFT JOIN per_day AS p ON p.day = days.day
ORDER BY days.day
