-- One token bucket per embeddings quota (an API organisation), shared by every run and process that
-- sends requests against it: each sender takes from the row under a row lock before a request, so
-- that concurrent runs together stay under the configured requests/tokens per minute.
-- `paused_until` holds everyone back when the provider's own headers say the quota is spent.
CREATE TABLE embedding_rate_limits (
    quota         text             PRIMARY KEY,
    requests      double precision NOT NULL,
    tokens        double precision NOT NULL,
    updated_at    double precision NOT NULL,  -- epoch seconds of the database clock
    paused_until  double precision NOT NULL DEFAULT 0
);
