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
