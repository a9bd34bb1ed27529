-- Idempotency-Key answers per caller, and which customer owns which upstream message.

CREATE TABLE idempotency_keys (
    caller        TEXT NOT NULL,
    key           TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- Method, path and canonical body: the same key with another request is refused.
    request_hash  BYTEA NOT NULL,
    -- NULL while the first request is still running.
    status        SMALLINT,
    response      JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);

CREATE TABLE messages (
    wiro_guid    TEXT PRIMARY KEY,
    instance_id  UUID NOT NULL REFERENCES instances (id),
    customer_id  UUID NOT NULL REFERENCES customers (id),
    session      TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_instance ON messages (instance_id, created_at);
