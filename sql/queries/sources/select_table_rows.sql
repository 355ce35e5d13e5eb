-- Every row of a configured table source: key, title and the text columns, in that order. An identifier
-- template filled with psycopg.sql (pipelines.sql.composed): the names come from configuration.
SELECT {key_column}, {title_column}, {text_columns} FROM {table}
