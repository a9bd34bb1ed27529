-- Scheduled work: operator alerts, automatic top-ups, error-restart and top-up bookkeeping.

-- Things ops must see: parked renewals, upstream drift, credit alerts. One open alert per
-- (kind, subject); resolving it closes it.
CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN (
                     'renewal_parked', 'upstream_orphan', 'upstream_missing', 'upstream_duplicate',
                     'error_restarts_exhausted', 'credits_low', 'topup_cap_reached', 'topup_failed')),
    -- What it is about: `instance:<id>` or `wiro:<guid>`.
    subject      TEXT NOT NULL,
    instance_id  UUID REFERENCES instances (id),
    detail       JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (kind, subject) WHERE resolved_at IS NULL;

-- Packs bought automatically (the monthly cap counts these).
CREATE TABLE auto_topups (
    id             BIGSERIAL PRIMARY KEY,
    customer_id    UUID NOT NULL REFERENCES customers (id),
    instance_id    UUID NOT NULL REFERENCES instances (id),
    pack           TEXT NOT NULL,
    charged_cents  BIGINT NOT NULL CHECK (charged_cents >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX auto_topups_customer_time ON auto_topups (customer_id, created_at);

ALTER TABLE instances
    -- Restarts after Wiro reported Error (5), reset once it runs again.
    ADD COLUMN error_restarts INTEGER NOT NULL DEFAULT 0 CHECK (error_restarts >= 0),
    ADD COLUMN last_error_restart_at TIMESTAMPTZ,
    -- Armed while credits are above the top-up threshold: one top-up per crossing.
    ADD COLUMN topup_armed BOOLEAN NOT NULL DEFAULT TRUE;

-- What the current subscription costs per period (changes on upgrade), as Wiro reports it.
ALTER TABLE instances ADD COLUMN subscription_amount_cents BIGINT CHECK (subscription_amount_cents >= 0);
