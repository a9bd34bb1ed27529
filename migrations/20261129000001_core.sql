-- Customers, instances, upstream operations (intents), ledger, audit, provisioning batches.
-- apalis keeps its own tables in the `apalis` schema.

CREATE TABLE customers (
    id            UUID PRIMARY KEY,
    -- The SaaS's own id for the customer: the JWT `sub`.
    external_id   TEXT NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
    display_name  TEXT CHECK (display_name IS NULL OR length(display_name) <= 200),
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE instances (
    id                       UUID PRIMARY KEY,
    customer_id              UUID NOT NULL REFERENCES customers (id),
    template_guid            TEXT NOT NULL,
    template_slug            TEXT NOT NULL,
    plan                     TEXT NOT NULL CHECK (plan IN ('starter', 'pro')),
    title                    TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- The plan price when ordered: what Deploy charges.
    price_cents              BIGINT NOT NULL CHECK (price_cents >= 0),
    wiro_guid                TEXT UNIQUE,
    state                    TEXT NOT NULL CHECK (state IN (
                                 'pending', 'deploying', 'configuring', 'awaiting_credentials',
                                 'starting', 'running', 'stopping', 'stopped', 'failed')),
    desired_state            TEXT NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    wiro_status              SMALLINT CHECK (wiro_status BETWEEN 0 AND 6),
    setup_required           BOOLEAN NOT NULL DEFAULT TRUE,
    missing_credentials      TEXT[] NOT NULL DEFAULT '{}',
    -- Credentials and custom skills from the order or the customer, sealed (AES-256-GCM), kept
    -- only until Wiro has them.
    pending_config           BYTEA,
    subscription_plan        TEXT,
    subscription_status      TEXT,
    subscription_period_end  TIMESTAMPTZ,
    cancel_at_period_end     BOOLEAN NOT NULL DEFAULT FALSE,
    monthly_credits          BIGINT,
    extra_credits            BIGINT,
    last_error               TEXT,
    failed_step              TEXT,
    -- Consecutive transient failures of the current step (backoff, give-up).
    step_failures            INTEGER NOT NULL DEFAULT 0 CHECK (step_failures >= 0),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Optimistic concurrency: every state change bumps it and checks the old value.
    version                  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX instances_customer ON instances (customer_id, created_at, id);
CREATE INDEX instances_state ON instances (state);

-- One row per money-moving or creating call to Wiro, written *before* the call (the intent).
-- `id` is the attempt token that fences the result write.
CREATE TABLE operations (
    id           UUID PRIMARY KEY,
    instance_id  UUID NOT NULL REFERENCES instances (id),
    kind         TEXT NOT NULL CHECK (kind IN ('deploy', 'renew', 'upgrade', 'extra_credits', 'cancel')),
    -- calling: sent or about to be; unknown: the answer was lost; the rest are final.
    state        TEXT NOT NULL CHECK (state IN ('calling', 'unknown', 'succeeded', 'adopted', 'not_found', 'refused')),
    worker       TEXT NOT NULL,
    -- Until then the caller may still be waiting on Wiro; nobody else may decide the outcome.
    lease_until  TIMESTAMPTZ NOT NULL,
    detail       JSONB NOT NULL DEFAULT '{}',
    wiro_guid    TEXT,
    error        TEXT,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ
);
-- Single flight: at most one unresolved operation of a kind per instance.
CREATE UNIQUE INDEX operations_one_in_flight ON operations (instance_id, kind)
    WHERE state IN ('calling', 'unknown');
-- An instance is deployed at most once.
CREATE UNIQUE INDEX operations_one_deploy ON operations (instance_id)
    WHERE kind = 'deploy' AND state IN ('succeeded', 'adopted');

-- Every wallet charge we cause, exactly once: `reference` names the charge
-- (deploy:<instance>, renewal:<instance>:<period end>, ...).
CREATE TABLE ledger_entries (
    id            BIGSERIAL PRIMARY KEY,
    customer_id   UUID NOT NULL REFERENCES customers (id),
    instance_id   UUID REFERENCES instances (id),
    kind          TEXT NOT NULL CHECK (kind IN ('deploy', 'upgrade', 'renewal', 'extra_credits')),
    amount_cents  BIGINT NOT NULL CHECK (amount_cents >= 0),
    reference     TEXT NOT NULL UNIQUE,
    wiro_guid     TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ledger_customer_time ON ledger_entries (customer_id, created_at);
CREATE INDEX ledger_time ON ledger_entries (created_at, id);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    request_id  TEXT,
    outcome     TEXT NOT NULL,
    detail      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_time ON audit_log (at, id);

CREATE TABLE provisioning_batches (
    id          UUID PRIMARY KEY,
    -- The caller's idempotency key: the same key is the same batch.
    key         TEXT UNIQUE CHECK (key IS NULL OR length(key) BETWEEN 1 AND 200),
    created_by  TEXT NOT NULL,
    total       INTEGER NOT NULL CHECK (total >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE provisioning_batch_items (
    batch_id     UUID NOT NULL REFERENCES provisioning_batches (id),
    position     INTEGER NOT NULL CHECK (position >= 0),
    customer_id  UUID NOT NULL REFERENCES customers (id),
    instance_id  UUID NOT NULL UNIQUE REFERENCES instances (id),
    PRIMARY KEY (batch_id, position)
);
