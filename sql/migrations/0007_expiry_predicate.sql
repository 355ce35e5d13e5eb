-- The retention rule in one place (SPEC section 8), for every query that asks "is this expired?": the
-- sweep, its dry run, the counts and the expiring-soon report. Plain SQL functions, which the planner
-- inlines: `is_expired(p, :as_of)` still walks provenance_sweep_idx in (expires_at, content_id) order.

-- The retention period is over at `as_of`, from the exact instant of expiry on (the generated
-- provenance.expires_at, a Tokyo-calendar anniversary). NULL when retention_years is null: such content
-- never expires, and `NOT retention_ended(p, t)` stays a plain `expires_at > t` range for the index.
CREATE FUNCTION retention_ended(p provenance, as_of timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p.expires_at <= as_of $$;

-- Expired: the retention period is over and no legal hold keeps the content. Always true or false.
CREATE FUNCTION is_expired(p provenance, as_of timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p.expires_at IS NOT NULL AND retention_ended(p, as_of) AND NOT p.legal_hold $$;
