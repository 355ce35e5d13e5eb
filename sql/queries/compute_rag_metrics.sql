-- The metrics of every day in [:start_day, :end_day) (local days of :tz), in one pass over the
-- dialogue log window [:window_start, :window_end). Days without rows still get a row, so that a
-- recompute replaces every day it was asked for.
WITH days AS (
    SELECT CAST(:start_day AS date) + offs AS day
    FROM generate_series(0, CAST(:end_day AS date) - CAST(:start_day AS date) - 1) AS offs
),
-- The only read of ai_dialogue_log. Materialized narrow (no text, citations reduced to a count and
-- their sources) because three aggregates below read it and the wide rows would otherwise be sorted.
dialogue AS MATERIALIZED (
    SELECT
        (l.created_at AT TIME ZONE :tz)::date AS day,
        l.user_id,
        l.latency_ms,
        l.token_cost_jpy,
        l.relevance_score,
        l.user_feedback,
        -- null, objects and strings are all "no citations" (SPEC section 5)
        CASE WHEN jsonb_typeof(l.citations) = 'array' THEN jsonb_array_length(l.citations) ELSE 0 END
            AS n_citations,
        CASE WHEN jsonb_typeof(l.citations) = 'array' THEN jsonb_path_query_array(l.citations, '$[*].source') END
            AS sources
    FROM ai_dialogue_log AS l
    WHERE l.created_at >= :window_start AND l.created_at < :window_end
),
per_day AS (
    SELECT
        day,
        count(*) AS total_queries,
        sum(n_citations) AS citation_count,
        100.0::float8 * count(*) FILTER (WHERE n_citations > 0) / count(*) AS citation_rate,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) AS latency_percentiles,
        sum(token_cost_jpy) AS total_cost,
        -- summed as numeric so the mean does not depend on the order rows are read in: a day's value
        -- is then identical whether it was computed alone or inside a backfill
        avg(relevance_score::numeric)::float8 AS average_relevance_score,
        100.0::float8 * count(*) FILTER (WHERE user_feedback = 1)
            / nullif(count(*) FILTER (WHERE user_feedback IN (-1, 1)), 0) AS positive_votes_rate
    FROM dialogue
    GROUP BY day
),
-- Distinct counts as hashed DISTINCTs rather than count(DISTINCT ...), which sorts every day's rows.
users AS (
    SELECT day, count(*) AS unique_users
    FROM (SELECT DISTINCT day, user_id FROM dialogue) AS u
    GROUP BY day
),
sources AS (
    SELECT day, count(*) AS unique_sources_count
    FROM (
        SELECT DISTINCT d.day, s.source
        FROM dialogue AS d
        CROSS JOIN LATERAL jsonb_array_elements_text(d.sources) AS s(source)
        WHERE s.source IS NOT NULL
    ) AS x
    GROUP BY day
)
SELECT
    days.day AS date,
    coalesce(p.total_queries, 0) AS total_queries,
    coalesce(u.unique_users, 0) AS unique_users,
    coalesce(p.citation_count, 0) AS citation_count,
    p.citation_rate,
    coalesce(s.unique_sources_count, 0) AS unique_sources_count,
    p.latency_percentiles[1] AS latency_p50_ms,
    p.latency_percentiles[2] AS latency_p95_ms,
    p.latency_percentiles[3] AS latency_p99_ms,
    coalesce(p.total_cost, 0) AS total_cost,
    p.total_cost / nullif(p.total_queries, 0) AS cost_per_answer,
    p.average_relevance_score,
    p.positive_votes_rate
FROM days
LEFT JOIN per_day AS p ON p.day = days.day
LEFT JOIN users AS u ON u.day = days.day
LEFT JOIN sources AS s ON s.day = days.day
ORDER BY days.day
