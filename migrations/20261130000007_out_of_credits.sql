-- An agent whose credits ran out (a reply carrying `[SYSTEM_CREDIT_LIMIT_REACHED]`, or Start
-- refused with `No credits available`) waits in `out_of_credits` while the top-up policy acts;
-- it starts again by itself once Wiro shows credits.
ALTER TABLE instances DROP CONSTRAINT instances_state_check;
ALTER TABLE instances ADD CONSTRAINT instances_state_check CHECK (state IN (
    'pending', 'deploying', 'configuring', 'awaiting_credentials', 'awaiting_connection',
    'starting', 'running', 'out_of_credits', 'stopping', 'stopped', 'failed'));
CREATE INDEX instances_out_of_credits ON instances (id) WHERE state = 'out_of_credits';
