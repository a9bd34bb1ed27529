-- The API processes alive now, so each takes its part of the per-customer request rates
-- (`[limits]`): every process writes its row every 2 s and counts the rows written in the last
-- 6 s (`api::rate_limits`). A process that stops writing stops counting; its row is deleted a
-- minute later by whoever writes next.
CREATE TABLE api_replicas (
    member TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
