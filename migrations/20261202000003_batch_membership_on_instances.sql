-- A batch's orders are marked on their instances (`batch_id`, `batch_position`) instead of in a
-- table of their own.
--
-- `provisioning_batch_items` held one row per order: the batch, the position, the customer and
-- the instance, each of the three a foreign key that Postgres checked row by row. In the bulk
-- benchmark its insert was the slowest statement of a batch's transaction (12 – 15 ms of ~38 at
-- 1,000 orders: 3,000 key checks, a statement trigger counting the shards), and that
-- transaction is time in which no order of the batch can start. The customer was the
-- instance's own, and an order is in at most one batch, so the instance row can say it: one
-- key check per order (the batch's) in the instances' insert, no second row, no second index.
--
-- The shards' counts are written by the statement that inserts the batch's instances
-- (`instances::insert_batch`), from the rows it inserted; `batch_progress` reads the batch from
-- the settling row itself, and single orders (no batch) no longer call it at all.
--
-- Expand, then contract: the previous release's pods still insert and read
-- `provisioning_batch_items` during a rollout, so the table stays, and a batch they submit is
-- counted into its shards as before and now also marked on its instances (below), so this
-- release's trigger settles it. (Their progress page shows only the batches they submitted.) A
-- later release drops the table.
--
-- No CHECK on the new columns: every statement on `instances` evaluates each of its CHECKs
-- (BENCHMARKS.md, "Stop 23"); only `insert_batch` writes them, both or neither, and the unique
-- index keeps one order per position.

ALTER TABLE instances
    ADD COLUMN batch_id UUID REFERENCES provisioning_batches (id),
    ADD COLUMN batch_position INTEGER;

UPDATE instances i SET batch_id = bi.batch_id, batch_position = bi.position
FROM provisioning_batch_items bi WHERE bi.instance_id = i.id;

CREATE UNIQUE INDEX instances_batch_position ON instances (batch_id, batch_position)
    WHERE batch_id IS NOT NULL;

-- A batch the previous release submits: counted as before, and marked on its instances.
CREATE OR REPLACE FUNCTION batch_items_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provisioning_batch_shards AS s (batch_id, shard, unsettled)
    SELECT n.batch_id, (n.position / b.shard_span % 64)::smallint, count(*)::int
    FROM new_items n JOIN provisioning_batches b ON b.id = n.batch_id
    GROUP BY 1, 2
    ON CONFLICT (batch_id, shard) DO UPDATE SET unsettled = s.unsettled + excluded.unsettled;
    UPDATE instances i SET batch_id = n.batch_id, batch_position = n.position
    FROM new_items n WHERE i.id = n.instance_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION batch_progress() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    step INTEGER;
    order_shard SMALLINT;
    left_in_shard INTEGER;
    batch RECORD;
BEGIN
    IF NEW.batch_id IS NULL OR instance_settled(NEW.state) = instance_settled(OLD.state) THEN
        RETURN NULL;
    END IF;
    SELECT (NEW.batch_position / b.shard_span % 64)::smallint INTO order_shard
    FROM provisioning_batches b WHERE b.id = NEW.batch_id;
    step := CASE WHEN instance_settled(NEW.state) THEN -1 ELSE 1 END;
    UPDATE provisioning_batch_shards s SET unsettled = s.unsettled + step
    WHERE s.batch_id = NEW.batch_id AND s.shard = order_shard
      AND NOT EXISTS (SELECT 1 FROM provisioning_batches b
                      WHERE b.id = NEW.batch_id AND b.completed_at IS NOT NULL)
    RETURNING s.unsettled INTO left_in_shard;
    IF left_in_shard IS DISTINCT FROM 0 THEN
        RETURN NULL;
    END IF;
    -- This shard is done: under the batch row's lock, look at every shard afresh. FOR NO KEY
    -- UPDATE, not FOR UPDATE: a statement that settles two orders of one shard updates the
    -- shard row twice, and the second update (of a row its own transaction wrote) checks the
    -- shard's foreign key, which holds KEY SHARE on this batch row; FOR UPDATE would wait for
    -- every other such holder while each of them waited for it.
    PERFORM 1 FROM provisioning_batches b WHERE b.id = NEW.batch_id FOR NO KEY UPDATE;
    UPDATE provisioning_batches b SET completed_at = now()
    WHERE b.id = NEW.batch_id AND b.completed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM provisioning_batch_shards s
                      WHERE s.batch_id = b.id AND s.unsettled > 0)
    RETURNING b.id, b.key, b.total, b.created_by, b.completed_at INTO batch;
    IF batch.completed_at IS NOT NULL THEN
        PERFORM webhook_emit('batch.completed', NULL, NULL, jsonb_build_object(
            'batch_id', batch.id, 'key', batch.key, 'total', batch.total,
            'created_by', batch.created_by,
            'counts', (SELECT jsonb_object_agg(s.state, s.n) FROM (
                SELECT CASE WHEN x.id = NEW.id THEN NEW.state ELSE x.state END AS state, count(*) AS n
                FROM instances x WHERE x.batch_id = batch.id GROUP BY 1) s)));
    END IF;
    RETURN NULL;
END $$;

-- Orders outside any batch (a customer's own) no longer call the function.
DROP TRIGGER batch_progress ON instances;
CREATE TRIGGER batch_progress AFTER UPDATE OF state ON instances
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL
          AND instance_settled(OLD.state) IS DISTINCT FROM instance_settled(NEW.state))
    EXECUTE FUNCTION batch_progress();
