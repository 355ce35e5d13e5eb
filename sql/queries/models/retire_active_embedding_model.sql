-- First half of a switch; the partial unique index allows one `active`, so the old one goes first.
UPDATE embedding_models
SET status = 'retired', retired_at = now()
WHERE status = 'active' AND name <> :name
RETURNING name
