-- Provenance of every ingested document, retention sweeps and their audit trail (SPEC sections 4 and 8).

-- One row per document (seed 001 columns plus legal_hold). Ingestion writes the columns that come from
-- the source (frontmatter or per-source defaults); legal_hold, permission_flag, external_share_consent,
-- access_policy, hash_c2pa, acquired_by and last_verified_at belong to data governance and ingestion
-- never overwrites them. Enumerations are plain text: new licences and acquisition methods arrive with
-- new sources, and a failed ingest over an unknown enum value would lose the whole batch.
CREATE TABLE provenance (
    content_id              bigint      PRIMARY KEY REFERENCES source_documents (id) ON DELETE CASCADE,
    content_type            text        NOT NULL,
    source_uri              text        NOT NULL,
    license_type            text,
    acquisition_method      text        NOT NULL,
    rights_holder           text,
    permission_flag         boolean     NOT NULL DEFAULT false,
    external_share_consent  boolean     NOT NULL DEFAULT false,
    hash_sha256             text        NOT NULL,
    hash_c2pa               text,
    -- null keeps the content forever; the upper bound keeps every expiry a representable timestamp
    retention_years         integer     CHECK (retention_years BETWEEN 0 AND 1000),
    legal_hold              boolean     NOT NULL DEFAULT false,
    access_policy           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    acquired_at             timestamptz NOT NULL,
    acquired_by             text,
    last_verified_at        timestamptz,
    -- Anniversaries are Asia/Tokyo calendar dates, whatever the session's TimeZone: timestamptz + interval
    -- depends on the session zone, so an expiry computed ad hoc could move by a day around 29 February.
    -- Postgres clamps 29 February to 28 February in a non-leap target year.
    expires_at              timestamptz GENERATED ALWAYS AS (
                                (acquired_at AT TIME ZONE 'Asia/Tokyo' + make_interval(years => retention_years))
                                AT TIME ZONE 'Asia/Tokyo'
                            ) STORED,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
-- The sweep walks expired, unheld rows in (expires_at, content_id) order, a bounded batch at a time.
CREATE INDEX provenance_sweep_idx ON provenance (expires_at, content_id)
    WHERE expires_at IS NOT NULL AND NOT legal_hold;
CREATE INDEX provenance_source_uri_idx ON provenance (source_uri);
CREATE INDEX provenance_license_idx ON provenance (license_type);

-- One row per item a sweep deleted (dry_run false) or would have deleted (dry_run true). No foreign key:
-- the row must outlive the document it accounts for.
CREATE TABLE retention_audit (
    id                  bigserial   PRIMARY KEY,
    sweep_id            uuid        NOT NULL,
    run_id              text,
    dry_run             boolean     NOT NULL,
    content_id          bigint      NOT NULL,
    source              text        NOT NULL,
    source_key          text        NOT NULL,
    source_uri          text        NOT NULL,
    hash_sha256         text        NOT NULL,
    license_type        text,
    rights_holder       text,
    acquired_at         timestamptz NOT NULL,
    retention_years     integer     NOT NULL,
    expired_at          timestamptz NOT NULL,
    deleted_at          timestamptz,
    chunks_deleted      integer     NOT NULL,
    embeddings_deleted  integer     NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (dry_run = (deleted_at IS NULL))
);
CREATE INDEX retention_audit_content_idx ON retention_audit (content_id);
CREATE INDEX retention_audit_sweep_idx ON retention_audit (sweep_id);
-- Each document is deleted at most once, so two overlapping sweeps can never both account for it.
CREATE UNIQUE INDEX retention_audit_deleted_once ON retention_audit (content_id) WHERE NOT dry_run;

-- What ingestion must not bring back: the exact (source, key, content) a sweep deleted. A different
-- content hash at the same key is new content with a new acquisition and is ingested. Kept apart from
-- retention_audit so that the check on every ingested item is one primary-key probe, and so that an
-- operator can allow a re-acquisition by deleting a tombstone without touching the audit trail.
CREATE TABLE retention_tombstones (
    source          text        NOT NULL,
    source_key      text        NOT NULL,
    content_sha256  text        NOT NULL,
    deleted_at      timestamptz NOT NULL,
    sweep_id        uuid        NOT NULL,
    PRIMARY KEY (source, source_key, content_sha256)
);
