-- A transactional WAL record naming the finished sweep (logical decoding passes it on as a message and
-- nothing else reads it). It gives the sweep's last transaction WAL of its own to commit, so that under
-- synchronous_commit its commit waits for the WAL up to it, every earlier asynchronous commit included, to
-- reach disk: a transaction that wrote no WAL commits without waiting. Executable by any role.
SELECT pg_logical_emit_message(true, 'rag-etl.retention', CAST(:sweep_id AS text))
