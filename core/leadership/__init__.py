"""Leadership: work that must have one owner among several core replicas.

Owns the election of a leader per role — per chain the follower that applies
blocks (`follow:<chain>`), the expiry sweeper (`clock`), the reconciler
(`reconcile`), the payout worker (`payouts`), the sweep planner (`sweeps`),
the JetStream relay (`relay`) — and the fence that refuses a deposed leader's
writes. It never decides what a leader does.

Fenced (Fence.check first in each transaction): the block applier, the
invoice clock, the reconciler's save, every write of the payout worker
(PayoutWorker._write) and each sweep plan. The relay writes no PostgreSQL
row its term could corrupt: its fence is the stream's expected last id.

How: a replica leads a role while it holds a session advisory lock on a
dedicated PostgreSQL connection (never one of the pool's). On taking the
lock it increments the role's epoch in `leader_epochs`; every transaction
the leader writes reads that row FOR SHARE and refuses (FencedError) unless
the epoch is still its own. The lock alone guarantees nothing across a
database failover or a paused process; the fence does: a takeover's
increment waits for transactions that already passed the check, and any
later one sees the new epoch.

A lost connection, a failed heartbeat or a lapsed lease (the process was
paused longer than lease_s) ends leadership at once: the led task is
cancelled. The server ends a dedicated session idle for lease_s
(idle_session_timeout), so a paused leader's lock is freed for another
replica within about lease_s.

Modules: decide (pure: lock keys, lease arithmetic, fence verdicts),
elector (the one writer of leader_epochs), fence (the check inside a
leader's transactions), invoice_feed (invoices other replicas created, for
the chain leader's in-memory index), settings ([leadership]).
"""
