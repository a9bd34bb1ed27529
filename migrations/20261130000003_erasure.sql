-- Erasing a closed customer's data: ops ask for it with the close; the customer job then
-- deletes the Wiro message sessions of its agents and records when it was done. The ledger and
-- the audit log are kept.
ALTER TABLE customers
    ADD COLUMN erase_requested_at TIMESTAMPTZ,
    ADD COLUMN erased_at TIMESTAMPTZ;

-- `request_hash` now holds an HMAC-SHA256 of method, path and canonical body under a key
-- derived from the credentials key (rows from before hold a bare SHA-256 and expire).
COMMENT ON COLUMN idempotency_keys.request_hash IS
    'HMAC-SHA256 fingerprint of method, path and canonical body (bare SHA-256 before 2026-11-30)';
