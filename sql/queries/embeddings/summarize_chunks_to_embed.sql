-- What `chunks_to_embed` (migration 0013) returns, in totals: its rows, and the distinct texts within
-- :max_input_tokens with their tokens (one count per text: identical texts have identical counts).
WITH todo AS (
    SELECT c.content_sha256, c.token_count
    FROM chunks_to_embed(:model, CAST(:max_attempts AS integer)) c
), texts AS (
    SELECT content_sha256, min(token_count) AS tokens
    FROM todo
    WHERE token_count <= :max_input_tokens
    GROUP BY content_sha256
)
SELECT (SELECT count(*) FROM todo) AS chunk_rows,
       (SELECT count(*) FROM texts) AS texts,
       (SELECT coalesce(sum(tokens), 0) FROM texts) AS tokens
