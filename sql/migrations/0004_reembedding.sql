-- Blue/green re-embedding: an audit of model switches, and when a retired model's vectors were dropped
-- (a retired model whose vectors survive can be re-activated without calling its provider again).
ALTER TABLE embedding_models ADD COLUMN embeddings_dropped_at timestamptz;

CREATE TABLE embedding_model_switches (
    id              bigserial   PRIMARY KEY,
    from_model      text        REFERENCES embedding_models (name),
    to_model        text        NOT NULL REFERENCES embedding_models (name),
    chunks_covered  bigint      NOT NULL,
    run_id          text,
    switched_at     timestamptz NOT NULL DEFAULT now()
);
