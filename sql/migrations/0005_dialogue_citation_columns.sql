-- What the daily metrics need from `citations`, derived once when a dialogue is written, and
-- indexes that let the metrics read a day without touching the wide heap rows (SPEC section 5).
-- Parsing every citation object on every recompute cost ~3 µs a row; a backfill of a year re-read
-- all of them, so a single run was barely cheaper than one run per day.
--
-- The ALTER rewrites ai_dialogue_log (stored generated columns are filled for existing rows) and
-- holds an exclusive lock while it does: on a large log, apply this in a quiet window.

-- The distinct non-null `source`s of the top-level objects of a citations array, as the metric counts
-- them; anything else (null, objects, strings, numbers, array elements that are not objects) has none.
-- NULL only when the list is too long to sit in an index entry (a btree entry is limited to ~2.7 kB,
-- and an index must never make the application's INSERT fail): the metrics read those few rows'
-- citations from the heap instead. 1600 bytes bounds the array as stored (each element's text plus
-- its header and alignment) well below that limit.
-- A stored generated column keeps the value computed at write time, so this function must never be
-- replaced in place: a changed definition needs a new migration that also rewrites the column.
CREATE FUNCTION dialogue_citation_sources(citations jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN coalesce(sum(octet_length(x.source) + 8), 0) <= 1600
                THEN coalesce(array_agg(x.source), '{}') END
    FROM (
        SELECT DISTINCT e.value ->> 'source' AS source
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(citations) = 'array' THEN citations END) AS e
        WHERE e.value ->> 'source' IS NOT NULL
    ) AS x;
END;

ALTER TABLE ai_dialogue_log
    -- null, objects and strings are all "no citations" (SPEC section 5)
    ADD COLUMN citation_count integer NOT NULL GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(citations) = 'array' THEN jsonb_array_length(citations) ELSE 0 END
    ) STORED,
    ADD COLUMN citation_sources text[] GENERATED ALWAYS AS (dialogue_citation_sources(citations)) STORED;

-- The metrics read one day per index range scan. Each index carries only what one part of the
-- computation needs, because an index-only scan decodes every column of the entry: one wide entry
-- read three times cost more than three narrow ones.
CREATE INDEX ai_dialogue_log_metrics_idx ON ai_dialogue_log (created_at)
    INCLUDE (latency_ms, user_feedback, citation_count, relevance_score, token_cost_jpy);
CREATE INDEX ai_dialogue_log_created_user_idx ON ai_dialogue_log (created_at) INCLUDE (user_id);
CREATE INDEX ai_dialogue_log_citation_sources_idx ON ai_dialogue_log (created_at) INCLUDE (citation_sources)
    WHERE citation_count > 0 AND citation_sources IS NOT NULL;
-- Rows whose sources were too many to index: normally none, so this index stays empty.
CREATE INDEX ai_dialogue_log_citation_sources_unindexed_idx ON ai_dialogue_log (created_at)
    WHERE citation_count > 0 AND citation_sources IS NULL;

-- ai_dialogue_log_metrics_idx has the same key and serves every created_at range scan, so the plain
-- index would only be one more index to update on each insert.
DROP INDEX ai_dialogue_log_created_at_idx;
