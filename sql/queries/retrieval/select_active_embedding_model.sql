-- The model applications embed queries with (migration 0017): none before the first ingestion.
SELECT name, dimensions, provider, provider_model FROM active_embedding_model()
