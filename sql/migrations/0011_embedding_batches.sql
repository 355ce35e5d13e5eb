-- Embeddings through the OpenAI Batch API: one row per submitted batch (one request file each), and which
-- texts each request of it carries, so that a batch's output, hours later, maps back to chunks by content hash.
CREATE TABLE embedding_batches (
    id                  bigserial   PRIMARY KEY,
    model               text        NOT NULL REFERENCES embedding_models (name),
    -- 'preparing' until the API accepted it; then the API's own status, last seen
    status              text        NOT NULL DEFAULT 'preparing',
    batch_id            text        UNIQUE,
    input_file_id       text,
    output_file_id      text,
    error_file_id       text,
    requests            integer     NOT NULL,
    texts               integer     NOT NULL,
    estimated_tokens    bigint      NOT NULL,
    estimated_cost_usd  numeric     NOT NULL,
    sync_cost_usd       numeric     NOT NULL,
    file_bytes          bigint      NOT NULL,
    run_id              text,
    error               text,
    polls               integer     NOT NULL DEFAULT 0,
    next_poll_at        timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- set once, under a row lock, in the transaction that writes the batch's vectors
    applied_at          timestamptz,
    texts_written       integer,
    texts_failed        integer,
    -- as billed: the usage the output reports, at the batch price
    tokens              bigint,
    cost_usd            numeric
);
CREATE INDEX embedding_batches_open_idx ON embedding_batches (next_poll_at) WHERE applied_at IS NULL;

CREATE TABLE embedding_batch_requests (
    batch           bigint  NOT NULL REFERENCES embedding_batches (id) ON DELETE CASCADE,
    custom_id       text    NOT NULL,
    -- in input order: the response's embedding i is the vector of content_sha256s[i]
    content_sha256s text[]  NOT NULL,
    PRIMARY KEY (batch, custom_id)
);
