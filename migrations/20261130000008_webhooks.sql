-- Signed outbound webhooks (Standard Webhooks). Events are written by triggers in the same
-- transaction as the change they report (a transactional outbox: no event lost, none
-- invented), fanned out to the endpoints subscribed at that moment, and delivered by the
-- workers' dispatcher with retries.

CREATE TABLE webhook_endpoints (
    id                     UUID PRIMARY KEY,
    url                    TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    description            TEXT CHECK (description IS NULL OR length(description) <= 500),
    -- NULL: every event type.
    event_types            TEXT[],
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    -- `whsec_…` secrets, sealed with the credentials key (bound to the endpoint id). During a
    -- rotation's grace period both sign.
    secret                 BYTEA NOT NULL,
    previous_secret        BYTEA,
    previous_secret_until  TIMESTAMPTZ,
    disabled_reason        TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE webhook_events (
    -- Sent as `webhook-id` (`msg_<id>`), the same on every attempt and replay.
    id           UUID PRIMARY KEY,
    type         TEXT NOT NULL,
    -- The exact bytes that are signed and sent: {"type", "timestamp", "data"}.
    body         TEXT NOT NULL,
    instance_id  UUID,
    customer_id  UUID,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_time ON webhook_events (created_at DESC, id DESC);

CREATE TABLE webhook_deliveries (
    event_id         UUID NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A dispatcher holds the delivery until then (another may take it over afterwards).
    lease_until      TIMESTAMPTZ,
    first_attempt_at TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id  UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The receiver's HTTP status (NULL: no answer — refused, timed out, blocked).
    status       SMALLINT,
    duration_ms  INTEGER NOT NULL,
    -- The first bytes of the answer, or why there was none.
    response     TEXT,
    error        TEXT
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id);

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'renewal_parked', 'upstream_orphan', 'upstream_missing', 'upstream_duplicate',
    'error_restarts_exhausted', 'credits_low', 'topup_cap_reached', 'topup_failed',
    'operation_in_doubt', 'order_stuck', 'deploy_landed_after_failure', 'spend_over_limit',
    'webhook_endpoint_disabled'));

-- Writes one event and its deliveries to the endpoints subscribed now.
CREATE FUNCTION webhook_emit(kind TEXT, instance UUID, customer UUID, data JSONB)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    event UUID := gen_random_uuid();
BEGIN
    INSERT INTO webhook_events (id, type, body, instance_id, customer_id)
    VALUES (event, kind,
            jsonb_build_object(
                'type', kind,
                'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'data', data)::text,
            instance, customer);
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
    SELECT event, e.id FROM webhook_endpoints e
    WHERE e.enabled AND (e.event_types IS NULL OR kind = ANY (e.event_types));
END $$;

-- What every agent event says about the agent.
CREATE FUNCTION webhook_agent(i instances) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'agent_id', i.id,
        'customer', (SELECT external_id FROM customers WHERE id = i.customer_id),
        'template', i.template_slug,
        'plan', i.plan,
        'title', i.title)
$$;

CREATE FUNCTION instances_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    agent JSONB := webhook_agent(NEW);
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM webhook_emit('agent.state_changed', NEW.id, NEW.customer_id,
                             agent || jsonb_build_object('from', OLD.state, 'to', NEW.state));
        CASE NEW.state
            WHEN 'running' THEN
                PERFORM webhook_emit('agent.running', NEW.id, NEW.customer_id, agent);
            WHEN 'failed' THEN
                PERFORM webhook_emit('agent.failed', NEW.id, NEW.customer_id,
                    agent || jsonb_build_object('step', NEW.failed_step, 'reason', NEW.last_error));
            WHEN 'awaiting_credentials' THEN
                PERFORM webhook_emit('agent.awaiting_credentials', NEW.id, NEW.customer_id,
                    agent || jsonb_build_object('missing_credentials', to_jsonb(NEW.missing_credentials)));
            WHEN 'awaiting_connection' THEN
                PERFORM webhook_emit('agent.awaiting_connection', NEW.id, NEW.customer_id,
                    agent || jsonb_build_object('missing_connections', to_jsonb(NEW.missing_connections)));
            WHEN 'out_of_credits' THEN
                PERFORM webhook_emit('credits.exhausted', NEW.id, NEW.customer_id, agent);
            ELSE NULL;
        END CASE;
    END IF;
    IF NEW.cancel_at_period_end AND NOT OLD.cancel_at_period_end THEN
        PERFORM webhook_emit('subscription.cancelled', NEW.id, NEW.customer_id,
            agent || jsonb_build_object('cancels_at', NEW.cancels_at, 'source', NEW.cancel_source,
                                        'downgrade_to', NEW.downgrade_to));
    END IF;
    IF NEW.subscription_status = 'expired' AND OLD.subscription_status IS DISTINCT FROM 'expired' THEN
        PERFORM webhook_emit('subscription.expired', NEW.id, NEW.customer_id,
            agent || jsonb_build_object('period_end', NEW.subscription_period_end));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER instances_webhook_events AFTER UPDATE ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_webhook_events();

CREATE FUNCTION ledger_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    agent JSONB;
BEGIN
    IF NEW.kind NOT IN ('renewal', 'extra_credits') OR NEW.instance_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT webhook_agent(i) INTO agent FROM instances i WHERE i.id = NEW.instance_id;
    agent := agent || jsonb_build_object('amount_cents', NEW.amount_cents, 'reference', NEW.reference);
    IF NEW.kind = 'renewal' THEN
        PERFORM webhook_emit('subscription.renewed', NEW.instance_id, NEW.customer_id, agent);
    ELSE
        PERFORM webhook_emit('credits.topped_up', NEW.instance_id, NEW.customer_id, agent);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_webhook_events AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_webhook_events();

CREATE FUNCTION alerts_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    data JSONB := jsonb_build_object('alert_id', NEW.id, 'kind', NEW.kind, 'subject', NEW.subject,
                                     'agent_id', NEW.instance_id, 'detail', NEW.detail);
    customer UUID := (SELECT customer_id FROM instances WHERE id = NEW.instance_id);
BEGIN
    PERFORM webhook_emit('alert.raised', NEW.instance_id, customer, data);
    IF NEW.kind = 'renewal_parked' THEN
        PERFORM webhook_emit('subscription.renewal_parked', NEW.instance_id, customer, data);
    ELSIF NEW.kind = 'credits_low' THEN
        PERFORM webhook_emit('credits.low', NEW.instance_id, customer, data);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_webhook_events AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_webhook_events();
