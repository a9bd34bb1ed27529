-- A batch's progress shards follow its chunks, so a chunk's set-based write never waits on
-- another chunk's in a cycle.
--
-- An order's shard was its position modulo 64. A chunk's last write (its orders to running,
-- one statement) settles each of its orders, and `batch_progress` then updates each order's
-- shard row, in the order the statement meets the rows. Two chunks 64 positions apart (both in
-- flight once a worker runs more than eight chunks of eight) touched the same shards in
-- different orders: Postgres found the deadlock after `deadlock_timeout` (1 s) and failed one,
-- whose job was retried — a second's stall of the whole batch. In the bulk benchmark with
-- chunks of 16 it struck one run in six.
--
-- Now a batch records how many consecutive positions share a shard (`shard_span`: the chunk
-- size it was submitted with, `jobs::BULK_CHUNK`), and an order's shard is
-- `position / shard_span % 64`: every order of a chunk is in one shard, so a chunk's write
-- locks one shard row and no two chunk writes can each hold what the other waits for.
-- Batches submitted before keep a span of 1, the rule their shards were counted by.
--
-- With a chunk per shard every chunk's last write brings its shard to zero and locks the batch
-- row to look for completion; that lock is now FOR NO KEY UPDATE (see `batch_progress`), which
-- such steps still take one at a time, as exactly-once completion needs.

ALTER TABLE provisioning_batches
    ADD COLUMN shard_span SMALLINT NOT NULL DEFAULT 1 CHECK (shard_span >= 1);

CREATE OR REPLACE FUNCTION batch_items_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provisioning_batch_shards AS s (batch_id, shard, unsettled)
    SELECT n.batch_id, (n.position / b.shard_span % 64)::smallint, count(*)::int
    FROM new_items n JOIN provisioning_batches b ON b.id = n.batch_id
    GROUP BY 1, 2
    ON CONFLICT (batch_id, shard) DO UPDATE SET unsettled = s.unsettled + excluded.unsettled;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION batch_progress() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    step INTEGER;
    item RECORD;
    left_in_shard INTEGER;
    batch RECORD;
BEGIN
    IF instance_settled(NEW.state) = instance_settled(OLD.state) THEN
        RETURN NULL;
    END IF;
    SELECT bi.batch_id, (bi.position / b.shard_span % 64)::smallint AS shard INTO item
    FROM provisioning_batch_items bi JOIN provisioning_batches b ON b.id = bi.batch_id
    WHERE bi.instance_id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    step := CASE WHEN instance_settled(NEW.state) THEN -1 ELSE 1 END;
    UPDATE provisioning_batch_shards s SET unsettled = s.unsettled + step
    WHERE s.batch_id = item.batch_id AND s.shard = item.shard
      AND NOT EXISTS (SELECT 1 FROM provisioning_batches b
                      WHERE b.id = item.batch_id AND b.completed_at IS NOT NULL)
    RETURNING s.unsettled INTO left_in_shard;
    IF left_in_shard IS DISTINCT FROM 0 THEN
        RETURN NULL;
    END IF;
    -- This shard is done: under the batch row's lock, look at every shard afresh. FOR NO KEY
    -- UPDATE, not FOR UPDATE: a statement that settles two orders of one shard updates the
    -- shard row twice, and the second update (of a row its own transaction wrote) checks the
    -- shard's foreign key, which holds KEY SHARE on this batch row; FOR UPDATE would wait for
    -- every other such holder while each of them waited for it.
    PERFORM 1 FROM provisioning_batches b WHERE b.id = item.batch_id FOR NO KEY UPDATE;
    UPDATE provisioning_batches b SET completed_at = now()
    WHERE b.id = item.batch_id AND b.completed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM provisioning_batch_shards s
                      WHERE s.batch_id = b.id AND s.unsettled > 0)
    RETURNING b.id, b.key, b.total, b.created_by, b.completed_at INTO batch;
    IF batch.completed_at IS NOT NULL THEN
        PERFORM webhook_emit('batch.completed', NULL, NULL, jsonb_build_object(
            'batch_id', batch.id, 'key', batch.key, 'total', batch.total,
            'created_by', batch.created_by,
            'counts', (SELECT jsonb_object_agg(s.state, s.n) FROM (
                SELECT CASE WHEN x.id = NEW.id THEN NEW.state ELSE x.state END AS state, count(*) AS n
                FROM provisioning_batch_items bi JOIN instances x ON x.id = bi.instance_id
                WHERE bi.batch_id = batch.id GROUP BY 1) s)));
    END IF;
    RETURN NULL;
END $$;
