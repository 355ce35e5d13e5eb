-- The provider's model name beside the registry name (which carries `@dimensions` when not native), so
-- that a registered model's spec is read from its row rather than parsed from its name.
ALTER TABLE embedding_models ADD COLUMN model text;

UPDATE embedding_models
SET model = CASE WHEN name ~ '^.+@[0-9]+$' THEN regexp_replace(name, '@[0-9]+$', '') ELSE name END;

ALTER TABLE embedding_models ALTER COLUMN model SET NOT NULL;
