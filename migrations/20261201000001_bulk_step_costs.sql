-- Two costs every provisioning step paid, found with pg_stat_statements in the bulk benchmark.
--
-- 1. The instance and ledger event triggers built the agent's payload (a customers lookup and
--    a jsonb object, ~140 us per state change) before `webhook_emit` found that no endpoint
--    listens. They now return at once when no endpoint is enabled; `webhook_emit` still
--    filters by event type when some are.
--
-- 2. `batch.completed` counted a batch's unsettled orders in its one `provisioning_batches`
--    row: every order's last step locked that row until its transaction committed, so the last
--    steps of a batch ran one at a time (10.4 ms of lock wait per order at concurrency 16).
--    The count now lives in shards (an order's shard is its position modulo 64): steps wait
--    only for steps of the same shard. A step that brings its shard to zero locks the batch row
--    and sums the shards in a new statement; READ COMMITTED gives that statement a snapshot
--    taken after the lock, so of two steps that zero the last two shards, the one that locks
--    second sees the other's committed zero and completes the batch: exactly one does.
--    (A transaction that settles orders of two shards at once can now meet another in a
--    deadlock, which Postgres breaks by failing one; our steps settle one order each, and the
--    job that lost is retried.)

CREATE OR REPLACE FUNCTION instances_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    agent JSONB;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    agent := webhook_agent(NEW);
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

CREATE OR REPLACE FUNCTION ledger_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    agent JSONB;
BEGIN
    IF NEW.kind NOT IN ('renewal', 'extra_credits') OR NEW.instance_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
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

CREATE TABLE provisioning_batch_shards (
    batch_id   UUID NOT NULL REFERENCES provisioning_batches (id),
    shard      SMALLINT NOT NULL CHECK (shard BETWEEN 0 AND 63),
    unsettled  INTEGER NOT NULL CHECK (unsettled >= 0),
    PRIMARY KEY (batch_id, shard)
);

-- Batches still open carry their count over, shard by shard, from their orders' states.
INSERT INTO provisioning_batch_shards (batch_id, shard, unsettled)
SELECT bi.batch_id, (bi.position % 64)::smallint,
       count(*) FILTER (WHERE NOT instance_settled(x.state))
FROM provisioning_batch_items bi
JOIN provisioning_batches b ON b.id = bi.batch_id
JOIN instances x ON x.id = bi.instance_id
WHERE b.unsettled IS NOT NULL AND b.completed_at IS NULL
GROUP BY 1, 2;

CREATE OR REPLACE FUNCTION batch_items_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provisioning_batch_shards AS s (batch_id, shard, unsettled)
    SELECT batch_id, (position % 64)::smallint, count(*)::int FROM new_items GROUP BY 1, 2
    ON CONFLICT (batch_id, shard) DO UPDATE SET unsettled = s.unsettled + excluded.unsettled;
    RETURN NULL;
END $$;

-- The shards hold the count now (batches from before counting existed have none and, as
-- before, never complete).
ALTER TABLE provisioning_batches DROP COLUMN unsettled;

CREATE OR REPLACE FUNCTION batch_progress() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    step INTEGER;
    item RECORD;
    left_in_shard INTEGER;
    batch RECORD;
BEGIN
    IF instance_settled(NEW.state) = instance_settled(OLD.state) THEN
        RETURN NULL;
    END IF;
    SELECT bi.batch_id, bi.position INTO item
    FROM provisioning_batch_items bi WHERE bi.instance_id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    step := CASE WHEN instance_settled(NEW.state) THEN -1 ELSE 1 END;
    UPDATE provisioning_batch_shards s SET unsettled = s.unsettled + step
    WHERE s.batch_id = item.batch_id AND s.shard = item.position % 64
      AND NOT EXISTS (SELECT 1 FROM provisioning_batches b
                      WHERE b.id = item.batch_id AND b.completed_at IS NOT NULL)
    RETURNING s.unsettled INTO left_in_shard;
    IF left_in_shard IS DISTINCT FROM 0 THEN
        RETURN NULL;
    END IF;
    -- This shard is done: under the batch row's lock, look at every shard afresh.
    PERFORM 1 FROM provisioning_batches b WHERE b.id = item.batch_id FOR UPDATE;
    UPDATE provisioning_batches b SET completed_at = now()
    WHERE b.id = item.batch_id AND b.completed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM provisioning_batch_shards s
                      WHERE s.batch_id = b.id AND s.unsettled > 0)
    RETURNING b.id, b.key, b.total, b.created_by, b.completed_at INTO batch;
    IF batch.completed_at IS NOT NULL THEN
        PERFORM webhook_emit('batch.completed', NULL, NULL, jsonb_build_object(
            'batch_id', batch.id, 'key', batch.key, 'total', batch.total,
            'created_by', batch.created_by,
            'counts', (SELECT jsonb_object_agg(s.state, s.n) FROM (
                SELECT CASE WHEN x.id = NEW.id THEN NEW.state ELSE x.state END AS state, count(*) AS n
                FROM provisioning_batch_items bi JOIN instances x ON x.id = bi.instance_id
                WHERE bi.batch_id = batch.id GROUP BY 1) s)));
    END IF;
    RETURN NULL;
END $$;
