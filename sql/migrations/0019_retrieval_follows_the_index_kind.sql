-- The retrieval contract (0017) follows whichever index kind the pipeline built (VECTOR_INDEX_KIND): 0017 asked a
-- binary-quantized index for halfvec's 4 x k candidates (it needs 20 x k, as pipelines/lib/vector_index.py says)
-- and scanned an IVFFlat index with pgvector's default of one probed list. Now the candidates follow the index's
-- operator class and IVFFlat probes as many lists as the pipeline's own search does, with its iterative scan
-- for filters.
-- The functions are redefined whole (retrieval_statement gains an output, so it is dropped first); their
-- settings, search_path and grants are applied again as 0017 did. (No percent signs below: see 0017.)

-- Loads pgvector's library in this session, so that the functions' hnsw.* and ivfflat.* settings are known.
SELECT CAST('[1]' AS vector);

DROP FUNCTION retrieval_statement(vector, text, integer, text, text, jsonb, double precision, boolean);

-- The lists an IVFFlat index of `lists` lists probes per query, as pipelines/lib/vector_index.py ivfflat_probes
-- computes it (tests/test_retrieval.py compares the two): pgvector's advice of the square root up to 10 probed
-- lists, then 1 in 100 of the lists.
CREATE FUNCTION ivfflat_probes_for(lists integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT
AS $fn$
    SELECT greatest(1, least(lists, greatest((lists + 99) / 100, least(10, round(sqrt(lists))::integer))))
$fn$;

-- Checks the arguments and the model, and returns the statement that answers them, the candidates it fetches
-- and, through an IVFFlat index, the lists to probe. Not granted to anyone: it runs inside the two functions
-- below, as their owner, in their snapshot.
--   $1 query vector, $2 k, $3 source_name, $4 metadata_filter; exact true: an exact scan.
CREATE FUNCTION retrieval_statement(
    query_embedding vector, model_name text, k integer, source_name text, source_type text,
    metadata_filter jsonb, min_similarity double precision, exact boolean,
    OUT statement text, OUT via_index boolean, OUT candidates integer, OUT probes integer)
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    m           record;
    active      text;
    dims        integer;
    idx_expr    text;
    idx_op      text;
    idx_opclass text;
    idx_lists   integer;
    filters     text := '';
    exact_type  text;
    distance    text;
    cap         integer;
    kept        bigint;
BEGIN
    IF model_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: model_name is required: the model the query was embedded with',
            HINT = 'SELECT * FROM active_embedding_model() names the model to embed queries with';
    END IF;
    IF query_embedding IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: query_embedding is null';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: k must be between 1 and 1000, got ' || coalesce(k::text, 'null');
    END IF;
    IF source_type IS NOT NULL AND source_type NOT IN ('markdown', 'table') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: source_type must be ''markdown'' or ''table'', got '
                || quote_literal(source_type);
    END IF;
    IF metadata_filter IS NOT NULL AND jsonb_typeof(metadata_filter) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: metadata_filter must be a JSON object (matched with @>), got a '
                || jsonb_typeof(metadata_filter) || ': ' || left(metadata_filter::text, 100);
    END IF;
    IF min_similarity IS NOT NULL AND NOT (min_similarity BETWEEN -1 AND 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: min_similarity must be between -1 and 1, got ' || min_similarity;
    END IF;

    SELECT name INTO active FROM embedding_models WHERE status = 'active';
    SELECT name, status, dimensions, retired_at, embeddings_dropped_at, embeddings_dropping_at INTO m
    FROM embedding_models WHERE name = model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: unknown embedding model ' || quote_literal(model_name)
                || '; the active model is ' || coalesce(quote_literal(active), 'none yet'),
            HINT = 'embed the query with the model SELECT * FROM active_embedding_model() names';
    ELSIF m.status = 'building' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: embedding model ' || quote_literal(model_name)
                || ' is still being built and not served yet; the active model is '
                || coalesce(quote_literal(active), 'none yet');
    ELSIF m.status = 'retired'
          AND (m.embeddings_dropped_at IS NOT NULL OR m.embeddings_dropping_at IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: embedding model ' || quote_literal(model_name) || ' was retired at '
                || m.retired_at || ' and its grace period is over; the active model is '
                || coalesce(quote_literal(active), 'none');
    END IF;
    dims := vector_dims(query_embedding);
    IF dims <> m.dimensions THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: the query vector has ' || dims || ' dimensions but model '
                || quote_literal(model_name) || ' has ' || m.dimensions;
    END IF;
    IF vector_norm(query_embedding) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'retrieve_chunks: the query vector is all zeros: it has no direction to compare';
    END IF;

    IF source_name IS NOT NULL THEN
        filters := filters || ' AND d.source = $3';
    END IF;
    IF source_type = 'markdown' THEN
        filters := filters || ' AND d.source = ''local''';
    ELSIF source_type = 'table' THEN
        filters := filters || ' AND starts_with(d.source, ''table:'')';
    END IF;
    IF metadata_filter IS NOT NULL THEN
        filters := filters || ' AND d.metadata @> $4';
    END IF;

    -- A filter that keeps under 2 per cent of the chunks is answered exactly: through the index, the scan
    -- would read about candidates / share rows to find its candidates (at 1 per cent of 100,000 chunks
    -- slower, and with the relaxed order less complete, than reading the rows the filter keeps; measured by
    -- bench/bench_retrieval.py). Counted up to that share only, so a broad filter costs a short count.
    IF NOT exact AND filters <> '' THEN
        SELECT ceil(0.02 * greatest(c.reltuples, 0))::integer INTO cap
        FROM pg_class c WHERE c.oid = CAST('document_chunks' AS regclass);
        EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM document_chunks c JOIN source_documents d'
            || ' ON d.id = c.document_id WHERE true' || filters || ' LIMIT ' || cap || ') x'
            INTO kept USING query_embedding, k, source_name, metadata_filter;
        exact := kept < cap;
    END IF;

    -- The model's finished vector index, if any, whatever its kind (VECTOR_INDEX_KIND): its expression over
    -- `embedding`, its ordering operator, its operator class and, for IVFFlat, its list count; found by its
    -- predicate. The newest wins while an old and a new one both exist (a switch of model or of kind).
    IF NOT exact THEN
        SELECT pg_get_indexdef(i.indexrelid, 1, false), op.oprname, oc.opcname,
               (SELECT CAST(o.option_value AS integer) FROM pg_options_to_table(ic.reloptions) o
                WHERE o.option_name = 'lists')
        INTO idx_expr, idx_op, idx_opclass, idx_lists
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_opclass oc ON oc.oid = i.indclass[0]
        JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoppurpose = 'o'
        JOIN pg_operator op ON op.oid = ao.amopopr
        WHERE i.indrelid = CAST('chunk_embeddings' AS regclass)
          AND i.indisvalid AND i.indisready AND i.indnatts = 1
          AND pg_get_expr(i.indpred, i.indrelid) = '(model = ' || quote_literal(model_name) || '::text)'
        ORDER BY i.indexrelid DESC
        LIMIT 1;
    END IF;
    via_index := idx_expr IS NOT NULL;
    -- IVFFlat's iterative scan (below) probes further when a filter drops rows.
    IF idx_lists IS NOT NULL THEN
        probes := ivfflat_probes_for(idx_lists);
    END IF;

    exact_type := 'vector(' || dims || ')';
    distance := 'e.embedding::' || exact_type || ' OPERATOR(<=>) CAST($1 AS ' || exact_type || ') AS distance';
    -- Same candidates as pipelines/lib/vector_index.candidates_for, at most 1000: 20 x k through a binary-quantized
    -- index (one bit a dimension ranks coarsely), 4 x k through a halfvec one (HNSW or IVFFlat).
    candidates := CASE WHEN NOT via_index THEN k
                       WHEN idx_opclass = 'bit_hamming_ops' THEN least(1000, 20 * k)
                       ELSE least(1000, 4 * k) END;
    IF via_index THEN
        -- The query goes through the same expression as the stored vectors (the index's, with the query in
        -- place of the column). The filters are evaluated per row of the index scan, on its document found
        -- by primary key: a subquery the planner cannot turn into a join that reads the filtered rows first,
        -- so the index scan drives and its iterative scan replaces the rows they drop. The candidates are re-ranked below by exact distance.
        statement := 'SELECT e.chunk_id, ' || distance
            || ' FROM chunk_embeddings e WHERE e.model = ' || quote_literal(model_name)
            || CASE WHEN filters = '' THEN '' ELSE
                   ' AND (SELECT true' || filters || ' FROM source_documents d WHERE d.id ='
                   || ' (SELECT c.document_id FROM document_chunks c WHERE c.id = e.chunk_id))' END
            || ' ORDER BY ' || regexp_replace(idx_expr, '\membedding\M', 'e.embedding', 'g')
            || ' OPERATOR(' || idx_op || ') '
            || regexp_replace(idx_expr, '\membedding\M', 'CAST($1 AS ' || exact_type || ')', 'g')
            || ' LIMIT ' || candidates;
    ELSE
        -- Exact: the planner is free to read the filtered rows first.
        statement := 'SELECT e.chunk_id, ' || distance
            || ' FROM chunk_embeddings e'
            || ' JOIN document_chunks c ON c.id = e.chunk_id JOIN source_documents d ON d.id = c.document_id'
            || ' WHERE e.model = ' || quote_literal(model_name) || filters
            || ' ORDER BY distance, e.chunk_id LIMIT ' || candidates;
    END IF;
    statement := 'SELECT r.chunk_id, d.source_key, c.chunk_index, d.title,'
        || ' ARRAY(SELECT jsonb_array_elements_text(coalesce(c.metadata -> ''heading_path'', ''[]''))) AS heading_path,'
        || ' c.content, 1 - r.distance AS similarity, d.source, d.metadata,'
        || ' count(*) OVER () AS candidates_found'
        || ' FROM (' || statement || ') r'
        || ' JOIN document_chunks c ON c.id = r.chunk_id JOIN source_documents d ON d.id = c.document_id'
        || ' ORDER BY r.distance, r.chunk_id LIMIT $2';
END
$fn$;

-- The scan settings the statement of retrieval_statement needs, for the rest of the calling function (its own
-- SET clauses restore them when it returns). Not granted to anyone.
CREATE FUNCTION apply_retrieval_scan_settings(via_index boolean, candidates integer, probes integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $fn$
BEGIN
    IF probes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', probes::text, true);
    ELSIF via_index THEN
        -- pgvector's default of 40 finds ~0.88 of the true top 10 on clustered vectors; 100 ~0.99
        -- (pipelines/hnsw.py DEFAULT_EF_SEARCH), and never fewer than the candidates wanted.
        PERFORM set_config('hnsw.ef_search', greatest(100, candidates)::text, true);
    ELSE
        PERFORM set_config('enable_seqscan', 'on', true);
        PERFORM set_config('enable_bitmapscan', 'on', true);
        PERFORM set_config('enable_sort', 'on', true);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION retrieve_chunks(
    query_embedding vector,
    model_name text,
    k integer DEFAULT 5,
    source_name text DEFAULT NULL,
    source_type text DEFAULT NULL,
    metadata_filter jsonb DEFAULT NULL,
    min_similarity double precision DEFAULT NULL)
RETURNS SETOF retrieved_chunk
LANGUAGE plpgsql STABLE SECURITY DEFINER
-- Every setting below is restored when the function returns, also those it changes inside (set_config):
-- the caller's session and transaction keep theirs. Through the index without the plans that would sort
-- the whole model instead, and without JIT, which costs more than such a query takes; pgvector's iterative
-- scans are switched on below, where pgvector has them.
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET hnsw.ef_search = 100
AS $fn$
DECLARE
    plan  record;
    r     record;
    exact boolean := false;
BEGIN
    LOOP
        plan := retrieval_statement(query_embedding, model_name, k, source_name, source_type, metadata_filter,
                                    min_similarity, exact);
        PERFORM apply_retrieval_scan_settings(plan.via_index, plan.candidates, plan.probes);
        FOR r IN EXECUTE plan.statement USING query_embedding, k, source_name, metadata_filter LOOP
            -- The index ran out (a filter keeping fewer rows than hnsw.max_scan_tuples reaches) before
            -- it found the candidates wanted: answer by an exact scan of the filtered rows instead.
            IF plan.via_index AND r.candidates_found < plan.candidates THEN
                exact := true;
                EXIT;
            END IF;
            IF min_similarity IS NULL OR r.similarity >= min_similarity THEN
                RETURN NEXT ROW(r.chunk_id, r.source_key, r.chunk_index, r.title, r.heading_path, r.content, r.similarity,
                                r.source, r.metadata)::retrieved_chunk;
            END IF;
        END LOOP;
        IF plan.via_index AND NOT FOUND THEN
            exact := true;
        END IF;
        EXIT WHEN NOT exact OR NOT plan.via_index;
    END LOOP;
END
$fn$;

-- The plan of the statement retrieve_chunks runs for these arguments (its first pass: through the index
-- when the model has one), under the same settings: how the application proves its queries use the index,
-- without reading the tables. It shows index and table names, never a row.
CREATE OR REPLACE FUNCTION explain_retrieve_chunks(
    query_embedding vector,
    model_name text,
    k integer DEFAULT 5,
    source_name text DEFAULT NULL,
    source_type text DEFAULT NULL,
    metadata_filter jsonb DEFAULT NULL,
    min_similarity double precision DEFAULT NULL)
RETURNS SETOF text
-- VOLATILE: Postgres allows EXPLAIN only there.
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET hnsw.ef_search = 100
AS $fn$
DECLARE
    plan record;
BEGIN
    plan := retrieval_statement(query_embedding, model_name, k, source_name, source_type, metadata_filter,
                                min_similarity, false);
    PERFORM apply_retrieval_scan_settings(plan.via_index, plan.candidates, plan.probes);
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || plan.statement
        USING query_embedding, k, source_name, metadata_filter;
END
$fn$;

-- Iterative index scans (pgvector 0.8): rows a filter drops are replaced by further index rows, up to
-- hnsw.max_scan_tuples. An older pgvector knows neither setting; there a filtered query whose index pass
-- comes up short is answered by the exact scan instead.
DO $iterative$
BEGIN
    IF (SELECT CAST(regexp_match(extversion, '^(\d+)\.(\d+)') AS int[]) >= ARRAY[0, 8]
        FROM pg_extension WHERE extname = 'vector') THEN
        ALTER FUNCTION retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET hnsw.iterative_scan = relaxed_order;
        ALTER FUNCTION retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET hnsw.max_scan_tuples = 20000;
        ALTER FUNCTION retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET ivfflat.iterative_scan = relaxed_order;
        ALTER FUNCTION explain_retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET hnsw.iterative_scan = relaxed_order;
        ALTER FUNCTION explain_retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET hnsw.max_scan_tuples = 20000;
        ALTER FUNCTION explain_retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)
            SET ivfflat.iterative_scan = relaxed_order;
    ELSE
        RAISE NOTICE 'pgvector older than 0.8: retrieve_chunks runs without iterative index scans';
    END IF;
END
$iterative$;

DO $grants$
DECLARE
    app_role text := coalesce(nullif(current_setting('rag.app_role', true), ''), 'rag_app');
    -- This schema, then pgvector's (Supabase keeps extensions in their own), then pg_temp last: a definer
    -- function must not resolve a name in a schema its caller can write to.
    path     text := quote_ident(current_schema()) || ', '
        || (SELECT quote_ident(n.nspname) FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
            WHERE x.extname = 'vector') || ', pg_temp';
    fn       text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'retrieval_statement(vector, text, integer, text, text, jsonb, double precision, boolean)',
        'apply_retrieval_scan_settings(boolean, integer, integer)',
        'ivfflat_probes_for(integer)',
        'retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)',
        'explain_retrieve_chunks(vector, text, integer, text, text, jsonb, double precision)',
        'active_embedding_model()'
    ] LOOP
        EXECUTE 'ALTER FUNCTION ' || fn || ' SET search_path = ' || path;
        -- Functions are executable by PUBLIC by default: these read what only the application may.
        EXECUTE 'REVOKE ALL ON FUNCTION ' || fn || ' FROM PUBLIC';
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
        EXECUTE 'GRANT EXECUTE ON FUNCTION'
            || ' retrieve_chunks(vector, text, integer, text, text, jsonb, double precision),'
            || ' explain_retrieve_chunks(vector, text, integer, text, text, jsonb, double precision),'
            || ' active_embedding_model() TO ' || quote_ident(app_role);
    ELSE
        RAISE NOTICE USING MESSAGE = 'role ' || app_role || ' does not exist: the retrieval functions are'
            ' granted to nobody; grant EXECUTE on retrieve_chunks, explain_retrieve_chunks and'
            ' active_embedding_model by hand as README "Security" shows';
    END IF;
END
$grants$;
