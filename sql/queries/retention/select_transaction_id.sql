-- Assigns the transaction an id, so that its commit writes a commit record and, under synchronous_commit,
-- waits for the WAL up to it (every earlier asynchronous commit included) to reach disk.
SELECT pg_current_xact_id()
