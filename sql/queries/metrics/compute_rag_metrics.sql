-- The metrics of every day in [:start_day, :end_day) (local days of :tz), in one statement. Days
-- without rows still get a row (an aggregate without GROUP BY returns one), so that a recompute
-- replaces every day it was asked for.
--
-- Each day is an index range scan of its own [local midnight, next local midnight): that puts a row
-- in its day without converting every created_at to local time (which cost more than any aggregate),
-- keeps each day's sorts and hash tables small, and reads each row of the window once per part.
-- The scans are index-only over the narrow indexes of migration 0005, never the wide log rows.
WITH days AS (
    SELECT
        day,
        day::timestamp AT TIME ZONE :tz AS day_start,
        (day + 1)::timestamp AT TIME ZONE :tz AS day_end
    FROM (
        SELECT CAST(:start_day AS date) + offs AS day
        FROM generate_series(0, CAST(:end_day AS date) - CAST(:start_day AS date) - 1) AS offs
    ) AS d
)
SELECT
    days.day AS date,
    p.total_queries,
    u.unique_users,
    coalesce(p.citation_count, 0) AS citation_count,
    100.0::float8 * p.cited / nullif(p.total_queries, 0) AS citation_rate,
    s.unique_sources_count,
    p.latency_percentiles[1] AS latency_p50_ms,
    p.latency_percentiles[2] AS latency_p95_ms,
    p.latency_percentiles[3] AS latency_p99_ms,
    coalesce(p.total_cost, 0) AS total_cost,
    p.total_cost / nullif(p.total_queries, 0) AS cost_per_answer,
    p.relevance_sum_2p52::float8 / nullif(p.relevance_scored, 0) / 4503599627370496 AS average_relevance_score,
    100.0::float8 * p.positive_votes / nullif(p.votes, 0) AS positive_votes_rate
FROM days
CROSS JOIN LATERAL (
    SELECT
        count(*) AS total_queries,
        sum(l.citation_count) AS citation_count,
        count(*) FILTER (WHERE l.citation_count > 0) AS cited,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY l.latency_ms) AS latency_percentiles,
        sum(l.token_cost_jpy) AS total_cost,
        -- Summed in fixed point (units of 2^-52; scores are in [0, 1]) so that the sum is exact and a
        -- day's mean does not depend on the order its rows are read in: computed alone or inside a
        -- backfill, it is the same number. Rounding each score to 2^-52 moves the mean by < 1.2e-16;
        -- the cast to numeric this replaces rounded to 15 significant digits and cost 4x the time.
        sum((l.relevance_score * 4503599627370496)::int8) AS relevance_sum_2p52,
        count(l.relevance_score) AS relevance_scored,
        count(*) FILTER (WHERE l.user_feedback = 1) AS positive_votes,
        count(*) FILTER (WHERE l.user_feedback IN (-1, 1)) AS votes
    FROM ai_dialogue_log AS l
    WHERE l.created_at >= days.day_start AND l.created_at < days.day_end
) AS p
-- Distinct counts as hashed DISTINCTs rather than count(DISTINCT ...), which sorts the day's values.
CROSS JOIN LATERAL (
    SELECT count(*) AS unique_users
    FROM (
        SELECT DISTINCT l.user_id
        FROM ai_dialogue_log AS l
        WHERE l.created_at >= days.day_start AND l.created_at < days.day_end
    ) AS x
) AS u
CROSS JOIN LATERAL (
    SELECT count(*) AS unique_sources_count
    FROM (
        SELECT unnest(l.citation_sources)
        FROM ai_dialogue_log AS l
        WHERE l.created_at >= days.day_start AND l.created_at < days.day_end
          AND l.citation_count > 0 AND l.citation_sources IS NOT NULL
        -- rows whose sources were too many to index (see migration 0005): parsed here instead
        UNION
        SELECT e.value ->> 'source'
        FROM ai_dialogue_log AS l
        CROSS JOIN LATERAL jsonb_array_elements(l.citations) AS e
        WHERE l.created_at >= days.day_start AND l.created_at < days.day_end
          AND l.citation_count > 0 AND l.citation_sources IS NULL
          AND e.value ->> 'source' IS NOT NULL
    ) AS x
) AS s
ORDER BY days.day
