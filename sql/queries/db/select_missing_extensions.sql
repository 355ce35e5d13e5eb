-- Of the extensions the migrations create (:names), those neither installed in this database nor available
-- on the server to install, with the server's major version (for the package name in the message).
SELECT n AS name, current_setting('server_version_num')::int / 10000 AS server_major
FROM unnest(CAST(:names AS text[])) AS n
WHERE NOT EXISTS (SELECT FROM pg_extension WHERE extname = n)
  AND NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = n)
