-- How many documents each of the run's sources holds before the run writes anything: the base of the
-- mass-deletion limit's share.
SELECT source, count(*) AS documents
FROM source_documents
WHERE source = ANY(:sources)
GROUP BY source
