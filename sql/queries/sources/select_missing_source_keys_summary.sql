-- How many of a source's stored documents are not among the keys a scan found, and the first few of them:
-- what a refused mass deletion names. Asked only once the counts alone show the run will be refused.
SELECT count(*) AS deleting,
       ARRAY(
           SELECT d.source_key FROM source_documents d
           WHERE d.source = :source AND NOT (d.source_key = ANY(:seen))
           ORDER BY d.source_key COLLATE "C"
           LIMIT :sample
       ) AS sample
FROM source_documents d
WHERE d.source = :source AND NOT (d.source_key = ANY(:seen))
