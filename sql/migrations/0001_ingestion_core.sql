-- Documents, chunks, the embedding model registry and the embeddings themselves.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE source_documents (
    id              bigserial PRIMARY KEY,
    source          text        NOT NULL,
    source_key      text        NOT NULL,
    title           text,
    content         text        NOT NULL,
    content_sha256  text        NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- the chunker fingerprint + content hash this document was last chunked with
    chunked_sha256  text,
    acquired_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, source_key)
);

CREATE TABLE document_chunks (
    id              bigserial PRIMARY KEY,
    document_id     bigint      NOT NULL REFERENCES source_documents (id) ON DELETE CASCADE,
    chunk_index     integer     NOT NULL,
    content         text        NOT NULL,
    content_sha256  text        NOT NULL,
    char_start      integer     NOT NULL,
    char_end        integer     NOT NULL,
    token_count     integer     NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, chunk_index),
    CHECK (char_start >= 0 AND char_end > char_start)
);
CREATE INDEX document_chunks_sha_idx ON document_chunks (content_sha256);

CREATE TABLE embedding_models (
    name                      text PRIMARY KEY,
    provider                  text        NOT NULL,
    dimensions                integer     NOT NULL CHECK (dimensions > 0),
    price_per_million_tokens  numeric     NOT NULL DEFAULT 0,
    status                    text        NOT NULL DEFAULT 'building'
                              CHECK (status IN ('building', 'active', 'retired')),
    created_at                timestamptz NOT NULL DEFAULT now(),
    activated_at              timestamptz,
    retired_at                timestamptz
);
CREATE UNIQUE INDEX embedding_models_one_active ON embedding_models (status) WHERE status = 'active';

-- `embedding` is an untyped vector so that models of different dimensions share the table;
-- each model gets its own partial HNSW expression index.
CREATE TABLE chunk_embeddings (
    chunk_id        bigint      NOT NULL REFERENCES document_chunks (id) ON DELETE CASCADE,
    model           text        NOT NULL REFERENCES embedding_models (name),
    embedding       vector      NOT NULL,
    content_sha256  text        NOT NULL,
    token_count     integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chunk_id, model)
);
CREATE INDEX chunk_embeddings_model_sha_idx ON chunk_embeddings (model, content_sha256);

CREATE VIEW active_chunk_embeddings AS
SELECT e.chunk_id, e.model, e.embedding, e.content_sha256, e.token_count, e.created_at
FROM chunk_embeddings e
JOIN embedding_models m ON m.name = e.model AND m.status = 'active';

CREATE TABLE embedding_errors (
    chunk_id        bigint      NOT NULL REFERENCES document_chunks (id) ON DELETE CASCADE,
    model           text        NOT NULL,
    content_sha256  text        NOT NULL,
    error           text        NOT NULL,
    details         text,
    attempts        integer     NOT NULL DEFAULT 1,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chunk_id, model)
);

-- Source items that could not be ingested (bad encoding, broken frontmatter, missing table, ...).
CREATE TABLE ingestion_errors (
    source          text        NOT NULL,
    source_key      text        NOT NULL,
    error           text        NOT NULL,
    last_seen       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_key)
);
