-- The demo dialogue log in CSV (JSON full of backslashes and quotes survives it; an unquoted empty field is
-- NULL). An identifier template filled with psycopg.sql (pipelines.sql.composed) from the generator's columns.
COPY ai_dialogue_log ({columns}) FROM STDIN (FORMAT csv)
