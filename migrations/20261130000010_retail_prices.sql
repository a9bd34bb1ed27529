-- Retail prices: what the SaaS's customers owe, next to what Wiro charges the operator. Every
-- ledger row records both, computed by a trigger in the row's own transaction from the price
-- list at that moment, so no path can book a charge without its retail amount.

-- The operator's price list: per template (or '*' for every template) and item (a plan or a
-- pack), in minor units of one currency. Rows come from `[pricing]` in the config (source
-- `config`, re-synced at startup) or from ops (source `ops`, kept until ops remove them).
CREATE TABLE price_list (
    template      TEXT NOT NULL CHECK (length(template) BETWEEN 1 AND 200),
    item          TEXT NOT NULL CHECK (item IN ('starter', 'pro', 'package1', 'package2', 'package3')),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency      TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    source        TEXT NOT NULL CHECK (source IN ('config', 'ops')),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (template, item)
);

-- What is charged where the list has no price: the wholesale amount plus a markup, in the
-- list's currency (one row).
CREATE TABLE pricing_rule (
    singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    markup_percent  INTEGER NOT NULL CHECK (markup_percent BETWEEN 0 AND 10000)
);
INSERT INTO pricing_rule (currency, markup_percent) VALUES ('USD', 0);

ALTER TABLE ledger_entries
    ADD COLUMN retail_amount_minor BIGINT CHECK (retail_amount_minor >= 0),
    ADD COLUMN currency TEXT CHECK (currency ~ '^[A-Z]{3}$');

-- The retail price of `wanted` (a plan or pack) of template `tpl`: the template's own price,
-- else the '*' price, else `wholesale` plus the markup.
CREATE FUNCTION retail_price(tpl TEXT, wanted TEXT, wholesale BIGINT,
                             OUT amount BIGINT, OUT cur TEXT)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT p.amount_minor, p.currency INTO amount, cur FROM price_list p
    WHERE p.item = wanted AND p.template IN (tpl, '*')
    ORDER BY (p.template = '*') LIMIT 1;
    IF amount IS NULL THEN
        SELECT round(wholesale * (100 + r.markup_percent) / 100.0)::bigint, r.currency
        INTO amount, cur FROM pricing_rule r;
    END IF;
END $$;

CREATE FUNCTION ledger_retail() RETURNS TRIGGER LANGUAGE plpgsql AS $$
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
    SELECT o.detail INTO detail FROM operations o WHERE o.id = NEW.operation_id;
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
CREATE TRIGGER ledger_retail BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_retail();

-- Rows booked before retail prices existed: what they cost, as the customer's price.
UPDATE ledger_entries SET retail_amount_minor = CASE WHEN kind = 'duplicate_deploy' THEN 0 ELSE amount_cents END,
                          currency = 'USD';
