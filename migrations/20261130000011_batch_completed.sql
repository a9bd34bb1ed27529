-- `batch.completed`: once every order of a bulk batch has left the in-progress states
-- (pending, deploying, configuring, starting, stopping), the batch is complete and its event is
-- written with the change that completed it. A counter per batch keeps this O(1) per change
-- (a 10,000-order batch is not recounted on every step); its row lock orders concurrent steps,
-- so exactly one of them sees it reach zero.
ALTER TABLE provisioning_batches
    ADD COLUMN unsettled INTEGER CHECK (unsettled >= 0),
    ADD COLUMN completed_at TIMESTAMPTZ;

CREATE FUNCTION instance_settled(state TEXT) RETURNS BOOLEAN LANGUAGE sql IMMUTABLE AS $$
    SELECT state IN ('running', 'stopped', 'failed', 'awaiting_credentials',
                     'awaiting_connection', 'out_of_credits')
$$;

CREATE FUNCTION batch_items_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    UPDATE provisioning_batches b SET unsettled = COALESCE(b.unsettled, 0) + n.added
    FROM (SELECT batch_id, count(*)::int AS added FROM new_items GROUP BY batch_id) n
    WHERE b.id = n.batch_id;
    RETURN NULL;
END $$;
CREATE TRIGGER batch_items_counted AFTER INSERT ON provisioning_batch_items
    REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT EXECUTE FUNCTION batch_items_counted();

CREATE FUNCTION batch_progress() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    step INTEGER;
    batch RECORD;
BEGIN
    IF instance_settled(NEW.state) = instance_settled(OLD.state) THEN
        RETURN NULL;
    END IF;
    step := CASE WHEN instance_settled(NEW.state) THEN -1 ELSE 1 END;
    UPDATE provisioning_batches b SET unsettled = b.unsettled + step,
           completed_at = CASE WHEN b.unsettled + step = 0 THEN now() END
    FROM provisioning_batch_items i
    WHERE i.instance_id = NEW.id AND b.id = i.batch_id
      AND b.unsettled IS NOT NULL AND b.completed_at IS NULL
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
CREATE TRIGGER batch_progress AFTER UPDATE OF state ON instances
    FOR EACH ROW EXECUTE FUNCTION batch_progress();
