-- One upstream rate budget for the whole deployment (`wiro.rate_budget_per_s`): every process
-- that calls Wiro reports here twice a second how many calls it wants and records the
-- share it took (`operations::budget`). Reports are serialized by row locks, and a share never
-- takes more than the others have left, so the shares never add up to more than the budget.
-- Rows of processes that stopped reporting no longer count and are deleted after a minute.
CREATE TABLE upstream_budget_members (
    member   TEXT PRIMARY KEY CHECK (length(member) BETWEEN 1 AND 200),
    demand   DOUBLE PRECISION NOT NULL CHECK (demand >= 0),
    share    DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (share >= 0),
    seen_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
