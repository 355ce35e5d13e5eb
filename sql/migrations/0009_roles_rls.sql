-- Least privilege: the roles beside the schema owner, what each may read and write, row-level security on
-- the dialogue log, and the audit trail of erasures ("right to be forgotten").
--
-- The schema owner (the pipeline role, whoever runs this migration) keeps every right. Two group roles
-- (NOLOGIN; log in through a member role or `ALTER ROLE ... LOGIN PASSWORD`) get only what they need:
--   application: retrieval reads through active_chunk_embeddings (never chunk_embeddings, which holds
--     building and retired models' vectors too), chunks and documents; reads and inserts its end user's
--     own dialogue rows; never updates or deletes.
--   analyst: reads the daily metrics, provenance and the audit tables; never a dialogue row.
-- Their names come from the settings rag.app_role and rag.analyst_role, which the migration runner sets
-- from APP_ROLE and ANALYST_ROLE. Creating a role needs CREATEROLE; without it the roles must exist
-- beforehand (README, "Security"), and a missing one is skipped with a NOTICE rather than failing the
-- migration, so that an owner without CREATEROLE can still migrate. (No percent signs below: the runner
-- sends the file through the driver, which would read them as placeholders.)

CREATE TABLE erasure_audit (
    id              bigserial   PRIMARY KEY,
    erasure_id      uuid        NOT NULL UNIQUE,
    run_id          text,
    requested_by    text,
    -- Nothing that identifies the user: the audit proves that an erasure ran and what it changed.
    rows_deleted    bigint      NOT NULL DEFAULT 0,
    batches         integer     NOT NULL DEFAULT 0,
    -- Asia/Tokyo days that lost rows, and those whose rag_metrics_history row was recomputed.
    days            date[]      NOT NULL DEFAULT '{}',
    days_recomputed date[]      NOT NULL DEFAULT '{}',
    started_at      timestamptz NOT NULL DEFAULT now(),
    -- null while the erasure runs, or if it stopped; every batch already done is committed with its
    -- metrics, so a rerun finishes the job.
    completed_at    timestamptz
);

-- An end user sees and writes only the rows of the user the application names for the transaction
-- (`SET LOCAL app.user_id = '...'`); without that setting, none. The owner is not subject to the
-- policy (no FORCE): the metrics and the erasure job read and delete every user's rows.
ALTER TABLE ai_dialogue_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY dialogue_own_rows ON ai_dialogue_log
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

DO $roles$
DECLARE
    app_role     text := coalesce(nullif(current_setting('rag.app_role', true), ''), 'rag_app');
    analyst_role text := coalesce(nullif(current_setting('rag.analyst_role', true), ''), 'rag_analyst');
    may_create   boolean;
    r            text;
BEGIN
    SELECT rolcreaterole OR rolsuper INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY[app_role, analyst_role] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            IF may_create THEN
                BEGIN
                    EXECUTE 'CREATE ROLE ' || quote_ident(r) || ' NOLOGIN';
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    -- roles are cluster-wide: another database's migration created it meanwhile
                    NULL;
                END;
            ELSE
                RAISE NOTICE USING MESSAGE = 'role ' || r || ' does not exist and ' || current_user
                    || ' may not create roles (no CREATEROLE): its grants are skipped; create it and grant'
                    ' by hand as README "Security" shows';
            END IF;
        END IF;
        -- USAGE on the schema is PUBLIC's by default; granted again where this role may, in case an
        -- administrator revoked it from PUBLIC.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r)
           AND has_schema_privilege(current_schema(), 'USAGE WITH GRANT OPTION') THEN
            EXECUTE 'GRANT USAGE ON SCHEMA ' || quote_ident(current_schema()) || ' TO ' || quote_ident(r);
        END IF;
    END LOOP;

    IF EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
        EXECUTE 'GRANT SELECT ON active_chunk_embeddings, document_chunks, source_documents TO '
            || quote_ident(app_role);
        EXECUTE 'GRANT SELECT, INSERT ON ai_dialogue_log TO ' || quote_ident(app_role);
        EXECUTE 'GRANT USAGE ON SEQUENCE ai_dialogue_log_id_seq TO ' || quote_ident(app_role);
        -- so that a process connected as this role can check the schema version (never migrate it)
        EXECUTE 'GRANT SELECT ON schema_migrations TO ' || quote_ident(app_role);
    END IF;

    IF EXISTS (SELECT FROM pg_roles WHERE rolname = analyst_role) THEN
        EXECUTE 'GRANT SELECT ON rag_metrics_history, provenance, retention_audit, erasure_audit,'
            ' schema_migrations TO ' || quote_ident(analyst_role);
    END IF;
END
$roles$;
