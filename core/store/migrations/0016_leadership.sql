-- Leadership of work that must have one owner across core replicas
-- (core/leadership): one row per role, its epoch incremented on every
-- takeover. Every write a leader makes reads its role's row FOR SHARE in the
-- same transaction and refuses if the epoch moved (the fence); a takeover's
-- increment waits for the old leader's in-flight transactions to end.
CREATE TABLE leader_epochs (
    role         text PRIMARY KEY,
    epoch        bigint NOT NULL CHECK (epoch > 0),
    holder       text NOT NULL,           -- the replica that took it (host:pid)
    acquire_time timestamptz NOT NULL DEFAULT now()
);

-- The fence, in the database so that a refusal is decided (and logged by the
-- server) even if the deposed writer never reads the answer: exactly the
-- leader's epoch passes (core/leadership/decide.py: fence_verdict); the row
-- stays locked FOR SHARE until the writer's transaction ends.
CREATE FUNCTION leader_fence(p_role text, p_epoch bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    stored bigint;
BEGIN
    SELECT epoch INTO stored FROM leader_epochs WHERE role = p_role FOR SHARE;
    IF stored IS DISTINCT FROM p_epoch THEN
        RAISE EXCEPTION 'fenced write refused: % epoch % is no longer current (stored %)',
            p_role, p_epoch, coalesce(stored::text, 'none')
            USING ERRCODE = 'KF001';
    END IF;
    RETURN stored;
END
$$;
