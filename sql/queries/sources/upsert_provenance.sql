-- Provenance for documents just ingested, one statement per batch. The hash is the stored content's;
-- acquired_at is the frontmatter's when given, else when the document entered the database. Columns owned
-- by data governance (legal_hold, consent, access_policy, ...) are never written here.
INSERT INTO provenance AS p (
    content_id, content_type, source_uri, license_type, acquisition_method, rights_holder,
    hash_sha256, retention_years, acquired_at
)
SELECT d.id, r.content_type, r.source_uri, r.license_type, r.acquisition_method, r.rights_holder,
       d.content_sha256, r.retention_years, COALESCE(r.acquired_at, d.acquired_at)
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r (
    source text, source_key text, content_type text, source_uri text, license_type text,
    acquisition_method text, rights_holder text, retention_years integer, acquired_at timestamptz
)
JOIN source_documents d ON d.source = r.source AND d.source_key = r.source_key
ON CONFLICT (content_id) DO UPDATE
SET content_type = EXCLUDED.content_type,
    source_uri = EXCLUDED.source_uri,
    license_type = EXCLUDED.license_type,
    acquisition_method = EXCLUDED.acquisition_method,
    rights_holder = EXCLUDED.rights_holder,
    hash_sha256 = EXCLUDED.hash_sha256,
    retention_years = EXCLUDED.retention_years,
    acquired_at = EXCLUDED.acquired_at,
    updated_at = now()
WHERE (p.content_type, p.source_uri, p.license_type, p.acquisition_method, p.rights_holder,
       p.hash_sha256, p.retention_years, p.acquired_at)
      IS DISTINCT FROM
      (EXCLUDED.content_type, EXCLUDED.source_uri, EXCLUDED.license_type, EXCLUDED.acquisition_method,
       EXCLUDED.rights_holder, EXCLUDED.hash_sha256, EXCLUDED.retention_years, EXCLUDED.acquired_at)
