-- Row-level security: an empty or blank `app.user_id` names no user.
--
-- Once a session has run `SET LOCAL app.user_id = '...'`, Postgres keeps the custom setting defined for the
-- rest of the session and reads it back as '' in every later transaction. A pooled connection handed to a
-- request that forgot to name its user then saw, and could insert, every row whose user_id is '', where
-- 0009 meant "without that setting, none". Every policy now compares with app_user_id(), which is null
-- when the setting is missing, empty or only white space: no row matches and no insert passes the check.
-- A setting with text in it is used as it is, padding included, as before.

-- STABLE: the setting changes between statements of a session. A plain SQL function, which the planner
-- inlines, so that a policy's comparison stays an indexable `user_id = <value>`. PUBLIC may execute it
-- (the default for functions), as every role subject to a policy must.
CREATE FUNCTION app_user_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $body$
        SELECT CASE WHEN btrim(current_setting('app.user_id', true), E' \t\r\n') = '' THEN NULL
                    ELSE current_setting('app.user_id', true) END
    $body$;

ALTER POLICY dialogue_own_rows ON ai_dialogue_log
    USING (user_id = app_user_id())
    WITH CHECK (user_id = app_user_id());
