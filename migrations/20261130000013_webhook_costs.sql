-- Events cost nothing where nobody listens: an event is written only when an enabled endpoint
-- is subscribed to its type (an endpoint added later receives what happens from then on). And
-- the instance trigger runs only for the changes it reports: reconciliation rewrites every
-- instance on every sweep.
CREATE OR REPLACE FUNCTION webhook_emit(kind TEXT, instance UUID, customer UUID, data JSONB)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    event UUID := gen_random_uuid();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.enabled AND (e.event_types IS NULL OR kind = ANY (e.event_types))) THEN
        RETURN;
    END IF;
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

DROP TRIGGER instances_webhook_events ON instances;
CREATE TRIGGER instances_webhook_events AFTER UPDATE ON instances
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.cancel_at_period_end IS DISTINCT FROM NEW.cancel_at_period_end
          OR OLD.subscription_status IS DISTINCT FROM NEW.subscription_status)
    EXECUTE FUNCTION instances_webhook_events();
