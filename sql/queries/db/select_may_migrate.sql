-- Whether the connected role may apply migrations: it owns schema_migrations (through membership or as a
-- superuser), or the table does not exist yet and the role may create tables in the schema.
SELECT CASE WHEN to_regclass('schema_migrations') IS NULL
            THEN has_schema_privilege(current_schema(), 'CREATE')
            ELSE pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass('schema_migrations')), 'USAGE')
       END
