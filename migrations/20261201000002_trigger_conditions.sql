-- Two row triggers that have nothing to do for most rows now say so in their WHEN clause, so
-- Postgres evaluates a condition instead of calling their PL/pgSQL for those rows (counted
-- with `track_functions` in the bulk benchmark, `BENCH_TABLE_STATS=1`):
--
-- * `batch_progress` acts only when an order becomes settled or unsettled: one of the four
--   state changes an order makes on its way to running, not all four.
-- * `ledger_webhook_events` acts only for an agent's renewals and extra credits, not for its
--   Deploy charge.
--
-- These two functions are unchanged and still check the same for themselves. And
-- `ledger_retail` reads the operation's detail only for the kinds priced from it (extra
-- credits: the pack; upgrades: the wholesale difference), not for every Deploy and renewal.

DROP TRIGGER batch_progress ON instances;
CREATE TRIGGER batch_progress AFTER UPDATE OF state ON instances
    FOR EACH ROW
    WHEN (instance_settled(OLD.state) IS DISTINCT FROM instance_settled(NEW.state))
    EXECUTE FUNCTION batch_progress();

DROP TRIGGER ledger_webhook_events ON ledger_entries;
CREATE TRIGGER ledger_webhook_events AFTER INSERT ON ledger_entries
    FOR EACH ROW
    WHEN (NEW.kind IN ('renewal', 'extra_credits') AND NEW.instance_id IS NOT NULL)
    EXECUTE FUNCTION ledger_webhook_events();

CREATE OR REPLACE FUNCTION ledger_retail() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    tpl TEXT;
    plan TEXT;
    detail JSONB;
    pro RECORD;
    starter RECORD;
    whole_diff BIGINT;
    priced RECORD;
BEGIN
    IF NEW.retail_amount_minor IS NOT NULL THEN
        RETURN NEW;
    END IF;
    SELECT i.template_slug, i.plan INTO tpl, plan FROM instances i WHERE i.id = NEW.instance_id;
    IF NEW.kind IN ('extra_credits', 'upgrade') THEN
        SELECT o.detail INTO detail FROM operations o WHERE o.id = NEW.operation_id;
    END IF;
    IF NEW.kind = 'duplicate_deploy' THEN
        -- The operator's loss: the customer owes nothing for it.
        SELECT 0::bigint AS amount, r.currency AS cur INTO priced FROM pricing_rule r;
    ELSIF NEW.kind IN ('deploy', 'renewal') THEN
        SELECT * INTO priced FROM retail_price(tpl, plan, NEW.amount_cents);
    ELSIF NEW.kind = 'extra_credits' THEN
        SELECT * INTO priced
        FROM retail_price(tpl, COALESCE(detail ->> 'pack', 'package1'), NEW.amount_cents);
    ELSIF NEW.kind = 'upgrade' THEN
        -- Prorated at retail the way Wiro prorates wholesale: the same share of the plans'
        -- difference.
        SELECT * INTO pro FROM retail_price(tpl, 'pro', 0);
        SELECT * INTO starter FROM retail_price(tpl, 'starter', 0);
        whole_diff := (detail ->> 'wholesale_diff_cents')::bigint;
        IF whole_diff IS NULL OR whole_diff <= 0
           OR NOT EXISTS (SELECT 1 FROM price_list p WHERE p.item = 'pro' AND p.template IN (tpl, '*'))
           OR NOT EXISTS (SELECT 1 FROM price_list p WHERE p.item = 'starter' AND p.template IN (tpl, '*')) THEN
            -- No list prices for both plans: the markup on what Wiro charged.
            SELECT round(NEW.amount_cents * (100 + r.markup_percent) / 100.0)::bigint AS amount,
                   r.currency AS cur
            INTO priced FROM pricing_rule r;
        ELSE
            SELECT round(GREATEST(pro.amount - starter.amount, 0) * NEW.amount_cents / whole_diff::numeric)::bigint AS amount,
                   pro.cur AS cur
            INTO priced;
        END IF;
    END IF;
    NEW.retail_amount_minor := priced.amount;
    NEW.currency := priced.cur;
    RETURN NEW;
END $$;
