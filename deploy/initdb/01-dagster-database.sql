-- Dagster's run, event and schedule storage, apart from the data database.
CREATE DATABASE dagster OWNER rag;
