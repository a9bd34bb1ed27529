-- OAuth connections: an agent whose template needs a connected account (Instagram, X...)
-- waits in `awaiting_connection` until Wiro's Status says connected.
ALTER TABLE instances DROP CONSTRAINT instances_state_check;
ALTER TABLE instances ADD CONSTRAINT instances_state_check CHECK (state IN (
    'pending', 'deploying', 'configuring', 'awaiting_credentials', 'awaiting_connection',
    'starting', 'running', 'stopping', 'stopped', 'failed'));
ALTER TABLE instances
    -- Required credential groups whose connection is missing (`instagram`, `twitter`...).
    ADD COLUMN missing_connections TEXT[] NOT NULL DEFAULT '{}',
    -- After a Connect, the job polls Status until then (Wiro redirects the browser to the
    -- customer's app, not to us); afterwards reconciliation looks now and then.
    ADD COLUMN connection_poll_until TIMESTAMPTZ;
CREATE INDEX instances_awaiting_connection ON instances (id) WHERE state = 'awaiting_connection';
