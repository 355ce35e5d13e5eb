-- Models left `building` by a configuration that changed again before they were switched to: retired,
-- so that the grace-period clean-up drops their vectors unless they are chosen again (and re-opened).
UPDATE embedding_models
SET status = 'retired', retired_at = now()
WHERE status = 'building' AND name <> :keep
RETURNING name
