-- A retired model chosen again is rebuilt beside the active one: its surviving vectors still count,
-- only what it lacks gets embedded.
UPDATE embedding_models
SET status = 'building', retired_at = NULL
WHERE name = :name AND status = 'retired'
RETURNING name
