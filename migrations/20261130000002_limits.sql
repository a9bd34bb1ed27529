-- Per-customer spending limits (NULL: the configured default), and the alert for charges we
-- could not refuse (Wiro's renewals, ops actions) that took a customer over its limit.

ALTER TABLE customers
    ADD COLUMN max_agents INTEGER CHECK (max_agents >= 0),
    ADD COLUMN monthly_spend_cents BIGINT CHECK (monthly_spend_cents >= 0);

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'renewal_parked', 'upstream_orphan', 'upstream_missing', 'upstream_duplicate',
    'error_restarts_exhausted', 'credits_low', 'topup_cap_reached', 'topup_failed',
    'operation_in_doubt', 'order_stuck', 'deploy_landed_after_failure', 'spend_over_limit'));
