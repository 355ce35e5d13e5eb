-- Forget the recorded errors of the sources a run has just scanned; the run records its own after.
DELETE FROM ingestion_errors WHERE source = ANY(:sources)
