-- A customer's deleted agent: stopped, its subscription cancelled at the period end (Wiro has
-- no immediate cancel), hidden from the customer. The row and its ledger stay for the books.
ALTER TABLE instances ADD COLUMN deleted_at TIMESTAMPTZ;
