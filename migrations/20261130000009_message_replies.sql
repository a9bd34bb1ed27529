-- Replies to messages: Wiro's callback (when `wiro.callback_base_url` is set) or a background
-- poll tells us a message ended; the outcome is recorded once and reported as
-- `message.completed` / `message.failed`.
ALTER TABLE messages
    -- HMAC fingerprint of the unguessable token in the message's callback URL (the token
    -- itself is never stored).
    ADD COLUMN callback_fp BYTEA UNIQUE,
    -- `completed` (agent_end), `failed` (agent_error, agent_cancel).
    ADD COLUMN outcome TEXT CHECK (outcome IN ('completed', 'failed')),
    ADD COLUMN finished_at TIMESTAMPTZ,
    -- When the poller looks next (NULL: it does not: finished, given up, or sent before this).
    ADD COLUMN next_poll_at TIMESTAMPTZ;
CREATE INDEX messages_polled ON messages (next_poll_at) WHERE next_poll_at IS NOT NULL;

CREATE FUNCTION messages_webhook_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    data JSONB;
BEGIN
    IF NEW.outcome IS NULL OR OLD.outcome IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT webhook_agent(i) INTO data FROM instances i WHERE i.id = NEW.instance_id;
    data := data || jsonb_build_object(
        'message_id', NEW.wiro_guid, 'session', NEW.session, 'finished_at', NEW.finished_at);
    PERFORM webhook_emit('message.' || NEW.outcome, NEW.instance_id, NEW.customer_id, data);
    RETURN NULL;
END $$;
CREATE TRIGGER messages_webhook_events AFTER UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_webhook_events();
