-- One bounded batch of one user's dialogue rows, oldest first (the (user_id, created_at) index serves
-- it, and consecutive batches touch consecutive days); returns how many went and their local days.
WITH doomed AS (
    SELECT id
    FROM ai_dialogue_log
    WHERE user_id = :user_id
    ORDER BY created_at, id
    LIMIT :batch_size
    FOR UPDATE
), gone AS (
    DELETE FROM ai_dialogue_log AS l
    USING doomed
    WHERE l.id = doomed.id
    RETURNING l.created_at
)
SELECT
    count(*) AS rows_deleted,
    coalesce(array_agg(DISTINCT (gone.created_at AT TIME ZONE :tz)::date), '{}') AS days
FROM gone
