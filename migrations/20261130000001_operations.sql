-- One protocol for every consequential upstream call (Deploy, Renew, undo-cancel, Cancel,
-- UpgradePlan, CreateExtraCreditCheckout, Message/Send); our own record of cancellations;
-- duplicates contained; renewals booked where they are first seen.

ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (kind IN (
    'deploy', 'renew', 'undo_cancel', 'cancel', 'upgrade', 'extra_credits', 'message_send'));
ALTER TABLE operations DROP CONSTRAINT operations_state_check;
-- not_sent: the intent was written but the call never left (its deadline had passed).
ALTER TABLE operations ADD CONSTRAINT operations_state_check CHECK (state IN (
    'calling', 'unknown', 'succeeded', 'adopted', 'not_found', 'refused', 'not_sent'));
ALTER TABLE operations
    -- Who asked (`customer:<ext>`, `ops:<sub>`, `worker:<name>`) and in which request.
    ADD COLUMN actor TEXT,
    ADD COLUMN request_id TEXT,
    -- The settled outcome, kind-specific (charged cents, cancelsAt, message guid...).
    ADD COLUMN result JSONB,
    -- Evidence checks made after the lease, and when one first found no trace of the call: it
    -- is "not found" only after a second check a quiet period later agrees.
    ADD COLUMN checks INTEGER NOT NULL DEFAULT 0 CHECK (checks >= 0),
    ADD COLUMN absent_since TIMESTAMPTZ,
    -- Calls that must not overlap on one instance share a flight: one Deploy; one change of
    -- the subscription (renew, undo-cancel, cancel, upgrade); one pack. Message sends overlap.
    ADD COLUMN flight TEXT GENERATED ALWAYS AS (CASE kind
        WHEN 'deploy' THEN 'deploy'
        WHEN 'extra_credits' THEN 'extra_credits'
        WHEN 'message_send' THEN NULL
        ELSE 'subscription' END) STORED;
DROP INDEX operations_one_in_flight;
CREATE UNIQUE INDEX operations_one_in_flight ON operations (instance_id, flight)
    WHERE state IN ('calling', 'unknown') AND flight IS NOT NULL;
-- The settle sweep's work list.
CREATE INDEX operations_unresolved ON operations (lease_until) WHERE state IN ('calling', 'unknown');

ALTER TABLE instances
    -- Wiro shows a pending cancellation nowhere: it is ours to remember. Who asked decides who
    -- may take it back (a reactivation undoes only a suspension's cancel).
    ADD COLUMN cancel_source TEXT CHECK (cancel_source IN ('customer', 'ops', 'suspension')),
    ADD COLUMN cancels_at TIMESTAMPTZ,
    -- When `state` last changed (for deadlines on waiting states and the stuck sweep).
    ADD COLUMN state_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Times the stuck sweep handed the instance back to a job.
    ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0 CHECK (requeues >= 0);
UPDATE instances SET cancel_source = 'customer' WHERE cancel_at_period_end;

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check CHECK (kind IN (
    'deploy', 'upgrade', 'renewal', 'extra_credits', 'duplicate_deploy'));
ALTER TABLE ledger_entries
    -- The operation that caused it, when one did (automatic renewals have none).
    ADD COLUMN operation_id UUID,
    -- The amount is our computation, not Wiro's answer (an upgrade whose answer was lost).
    ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'renewal_parked', 'upstream_orphan', 'upstream_missing', 'upstream_duplicate',
    'error_restarts_exhausted', 'credits_low', 'topup_cap_reached', 'topup_failed',
    'operation_in_doubt', 'order_stuck', 'deploy_landed_after_failure'));

-- Instances a Deploy created twice for one order: cancelled at Wiro so they never renew,
-- charged to us, kept here so reconciliation knows them.
CREATE TABLE upstream_duplicates (
    wiro_guid     TEXT PRIMARY KEY,
    instance_id   UUID NOT NULL REFERENCES instances (id),
    operation_id  UUID,
    found_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at  TIMESTAMPTZ
);

-- Upstream instances that are not ours (the operator's own): checked once by Detail for our
-- correlator, then left alone.
CREATE TABLE upstream_foreign (
    wiro_guid  TEXT PRIMARY KEY,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A key whose request started an upstream operation answers from that operation (in doubt,
-- then settled) and is never released while it is unresolved.
ALTER TABLE idempotency_keys ADD COLUMN operation_id UUID REFERENCES operations (id);
