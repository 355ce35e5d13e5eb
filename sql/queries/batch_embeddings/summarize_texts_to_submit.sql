-- What a Batch API submission for :model would send, in totals, without reading a text: the chunk rows
-- `chunks_to_embed` selects; of their distinct texts, those an unapplied batch already carries; of
-- the others, those within :max_input_tokens with their tokens, and those over it (set aside as failed)
-- with their chunk rows. One count per text: identical texts have identical token counts.
WITH todo AS (
    SELECT c.content_sha256, c.token_count
    FROM chunks_to_embed(:model, CAST(:max_attempts AS integer)) c
), in_open_batches AS (
    SELECT DISTINCT t.sha
    FROM embedding_batch_requests r
    JOIN embedding_batches b ON b.id = r.batch
    CROSS JOIN unnest(r.content_sha256s) AS t(sha)
    WHERE b.model = :model AND b.applied_at IS NULL
), texts AS (
    SELECT todo.content_sha256, min(todo.token_count) AS tokens, count(*) AS chunk_rows,
           bool_or(o.sha IS NOT NULL) AS carried
    FROM todo
    LEFT JOIN in_open_batches o ON o.sha = todo.content_sha256
    GROUP BY todo.content_sha256
)
SELECT coalesce(sum(chunk_rows), 0) AS chunk_rows,
       count(*) FILTER (WHERE carried) AS texts_in_open_batches,
       count(*) FILTER (WHERE NOT carried AND tokens <= :max_input_tokens) AS texts,
       coalesce(sum(tokens) FILTER (WHERE NOT carried AND tokens <= :max_input_tokens), 0) AS tokens,
       count(*) FILTER (WHERE NOT carried AND tokens > :max_input_tokens) AS oversize_texts,
       coalesce(sum(chunk_rows) FILTER (WHERE NOT carried AND tokens > :max_input_tokens), 0)
           AS oversize_chunk_rows
FROM texts
