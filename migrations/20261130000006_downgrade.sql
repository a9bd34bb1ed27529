-- Downgrade (Wiro: "cancel and re-deploy"). A scheduled downgrade is a cancel at period end
-- that remembers the plan to come back on: at the end, the same agent (our id) gets a new
-- Wiro instance on that plan through a new Deploy. Each Wiro instance an agent has had is a
-- generation; the earlier ones are kept in `instance_generations`.
ALTER TABLE instances
    ADD COLUMN downgrade_to TEXT CHECK (downgrade_to IN ('starter')),
    ADD COLUMN generation INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0),
    ADD CONSTRAINT instances_downgrade_is_a_cancel CHECK (downgrade_to IS NULL OR cancel_at_period_end);

-- Which generation an operation acted on (the instance's when its intent was written).
ALTER TABLE operations ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
-- One successful Deploy per generation of an agent.
DROP INDEX operations_one_deploy;
CREATE UNIQUE INDEX operations_one_deploy ON operations (instance_id, generation)
    WHERE kind = 'deploy' AND state IN ('succeeded', 'adopted');

-- The Wiro instances an agent had before its current one: reconciliation knows them (they are
-- ours, not duplicates nor foreign), and ops can follow the agent's history.
CREATE TABLE instance_generations (
    instance_id  UUID NOT NULL REFERENCES instances (id),
    generation   INTEGER NOT NULL,
    wiro_guid    TEXT NOT NULL UNIQUE,
    plan         TEXT NOT NULL CHECK (plan IN ('starter', 'pro')),
    reason       TEXT NOT NULL CHECK (reason IN ('downgrade')),
    ended_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, generation)
);
