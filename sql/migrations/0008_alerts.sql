-- Alerts the sensors raised: one row per alert ever claimed, so that a re-run day, a sensor tick seeing
-- the same evaluation again, or a third failure in a row never notifies twice, and a dashboard can list
-- what went out (and what could not be delivered). The webhook URL is a secret and is never stored.

CREATE TABLE alerts_sent (
    id             bigserial   PRIMARY KEY,
    -- metric:<day>:<metric> | job_failure:<job>:<first failed run>:<severity> | embedding_failures:<asset>:<run>
    dedup_key      text        NOT NULL UNIQUE,
    kind           text        NOT NULL CHECK (kind IN ('metric', 'job_failure', 'embedding_failures')),
    severity       text        NOT NULL CHECK (severity IN ('warning', 'critical')),
    day            date,                    -- the Asia/Tokyo day the alert is about
    metric         text        NOT NULL,
    value          double precision,
    threshold      double precision,
    job_name       text,
    run_id         text,
    link           text,
    payload        jsonb       NOT NULL,    -- the body posted (or to be posted) to the receiver
    -- pending: claimed, not delivered yet (retried on later ticks); sent; failed: gave up.
    status         text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
-- Each tick retries what is still pending, oldest first.
CREATE INDEX alerts_sent_pending_idx ON alerts_sent (id) WHERE status = 'pending';
CREATE INDEX alerts_sent_day_idx ON alerts_sent (day, severity);
