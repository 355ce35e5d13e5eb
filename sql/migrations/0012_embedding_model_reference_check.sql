-- chunk_embeddings.model still references embedding_models, checked once per statement instead of once per row.
--
-- Why: the foreign key ran a query per inserted vector to find a model that is one of a handful of rows, on the
-- write path that COPYs thousands of 1,536-d rows per transaction. A statement can only add models the table
-- then holds, and the table holds a handful, so one walk over the distinct models of the (model, content_sha256)
-- index (a few index probes, whatever the table's size) checks every statement.
--
-- Why not the same for chunk_id: a statement-level check needs the statement's rows in a transition table,
-- which copies every new row, vector included (~6 KB); on the write path that copy cost more than the
-- per-row check it would replace. So chunk_id keeps its foreign key (and its ON DELETE CASCADE).
--
-- What the foreign key guaranteed, and still holds:
--   * a vector naming a model that is not registered is refused, naming the model (INSERT, COPY, UPDATE);
--   * a model that has vectors cannot be deleted, renamed or truncated away.
--
-- Concurrency, under READ COMMITTED (each query in these functions takes a fresh snapshot):
--   * The check locks the models it finds FOR KEY SHARE, as the foreign key did, until the writer commits. A
--     model delete or rename needs a stronger row lock, so it waits for the writer, and its own check then
--     sees the writer's committed vectors and refuses. Changes that leave the name alone (status, activation)
--     take FOR NO KEY UPDATE, which KEY SHARE does not block.
--   * The other order: a delete or rename that holds the model row first makes the writer's lock wait; when
--     it commits, the locked row is gone and the writer's statement is refused (if it rolls back, the writer
--     goes on). Its own check did not see the writer's rows, which were not committed, and did not need to.
--   * TRUNCATE embedding_models takes ACCESS EXCLUSIVE, which waits for every writer holding a row lock on it.
--     The other tables that reference the registry keep their foreign keys, so TRUNCATE still needs CASCADE
--     or them listed; the check below refuses while chunk_embeddings has rows (a TRUNCATE that lists
--     chunk_embeddings too has emptied it by then).

ALTER TABLE chunk_embeddings DROP CONSTRAINT chunk_embeddings_model_fkey;

CREATE FUNCTION check_chunk_embedding_models() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    models  text[];
    missing text;
BEGIN
    -- The distinct models by the index, one probe each (a loose index scan).
    models := ARRAY(
        WITH RECURSIVE walk(name) AS (
            SELECT min(model) FROM chunk_embeddings
            UNION ALL
            SELECT (SELECT min(e.model) FROM chunk_embeddings e WHERE e.model > walk.name)
            FROM walk WHERE walk.name IS NOT NULL
        )
        SELECT name FROM walk WHERE name IS NOT NULL
    );
    -- ARRAY(...) runs its locking query to the end before the comparison, so every model found is locked
    -- (a join could stop reading it early); a model deleted by a transaction that committed while this one
    -- waited for its lock is not found.
    SELECT u.name INTO missing
    FROM unnest(models) AS u(name)
    WHERE u.name <> ALL(ARRAY(
        SELECT m.name FROM embedding_models m WHERE m.name = ANY(models) FOR KEY SHARE OF m
    ))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = 'chunk_embeddings: model ' || quote_literal(missing)
                || ' is not registered in embedding_models',
            HINT = 'register the model before writing its vectors';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER chunk_embeddings_model_registered
    AFTER INSERT OR UPDATE ON chunk_embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION check_chunk_embedding_models();

-- The registry is a handful of rows changed a few times a year: row by row is fine on this side, and only a
-- delete or a rename pays anything.
CREATE FUNCTION refuse_referenced_model_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT FROM chunk_embeddings) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = 'embedding_models: cannot truncate while chunk_embeddings holds vectors';
        END IF;
    ELSIF EXISTS (SELECT FROM chunk_embeddings e WHERE e.model = OLD.name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = 'embedding_models: model ' || quote_literal(OLD.name)
                || ' still has vectors in chunk_embeddings; delete them first';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER embedding_models_delete_referenced
    AFTER DELETE ON embedding_models
    FOR EACH ROW EXECUTE FUNCTION refuse_referenced_model_change();
CREATE TRIGGER embedding_models_rename_referenced
    AFTER UPDATE OF name ON embedding_models
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION refuse_referenced_model_change();
CREATE TRIGGER embedding_models_truncate_referenced
    AFTER TRUNCATE ON embedding_models
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_referenced_model_change();
