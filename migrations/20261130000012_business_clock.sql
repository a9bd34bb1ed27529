-- One clock for time-based business rules — the calendar month a charge belongs to (limits,
-- statements, the top-up cap) and the retention of idempotency keys: the database's clock plus
-- a shift. The shift is zero in production; tests move it together with the simulator's clock,
-- so a month can pass in a test. Leases, deadlines and heartbeats never read it.
CREATE TABLE business_clock (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    shift      INTERVAL NOT NULL DEFAULT '0'
);
INSERT INTO business_clock DEFAULT VALUES;

CREATE FUNCTION business_now() RETURNS TIMESTAMPTZ LANGUAGE sql STABLE AS $$
    SELECT now() + shift FROM business_clock
$$;

ALTER TABLE ledger_entries ALTER COLUMN created_at SET DEFAULT business_now();
ALTER TABLE auto_topups ALTER COLUMN created_at SET DEFAULT business_now();
