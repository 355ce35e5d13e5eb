-- The configured model joins the registry as `building`; the very first model becomes `active`
-- at once, since there is no earlier index for readers to keep using.
INSERT INTO embedding_models (name, provider, model, dimensions, price_per_million_tokens, status, activated_at)
SELECT :name, :provider, :model, :dimensions, :price,
       CASE WHEN EXISTS (SELECT 1 FROM embedding_models WHERE status = 'active') THEN 'building' ELSE 'active' END,
       CASE WHEN EXISTS (SELECT 1 FROM embedding_models WHERE status = 'active') THEN NULL ELSE now() END
ON CONFLICT (name) DO UPDATE
SET provider = EXCLUDED.provider, price_per_million_tokens = EXCLUDED.price_per_million_tokens
RETURNING status
