-- Vectors of deleted documents' chunks, kept for a grace period (DELETED_VECTOR_GRACE_DAYS) so that content
-- coming back (a reverted mistake, a folder moved or renamed) is embedded again for free: the embedding
-- step's reuse by content hash takes them back. One vector per (model, text), whichever document held it.
--
-- Filled only where ingestion deletes documents gone from their source (sources/delete_missing_source_documents);
-- never by a retention sweep or an erasure, which purge matching entries instead, so swept or erased content
-- does not survive here. `keep_until` is the end of the grace period, or the deleted document's retention
-- expiry when that comes first: a vector is never reused, and the sweep purges it, once either has passed.
CREATE TABLE deleted_chunk_vectors (
    model           text        NOT NULL REFERENCES embedding_models (name) ON DELETE CASCADE,
    content_sha256  text        NOT NULL,
    embedding       vector      NOT NULL,
    token_count     integer     NOT NULL,
    deleted_at      timestamptz NOT NULL DEFAULT now(),
    keep_until      timestamptz NOT NULL,
    PRIMARY KEY (model, content_sha256)
);
-- The retention sweep purges by text, whatever the model.
CREATE INDEX deleted_chunk_vectors_sha_idx ON deleted_chunk_vectors (content_sha256);

-- Least privilege (migration 0009): like chunk_embeddings, this table is the pipeline's alone. The application
-- reads vectors only through active_chunk_embeddings and the analyst never reads a vector, so neither role
-- gets a grant here, and PUBLIC has none (nothing to revoke: a new table grants PUBLIC nothing).
