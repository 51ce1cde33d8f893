"""Payouts, refunds and deposit sweeps: money leaving Kassa through the signer.

Owns: the `payouts`, `payout_transactions`, `payout_approvals` and nonce
tables; the payout state machine (`machine`, the only decider of a payout's
state, and `payouts.save`, its only writer); the pure decisions between the
worker's I/O (`tracking`: fees, refusals, approvals, chain tracking, refund
legs; `destinations`; `gaps`: nonce gaps no payout will fill); the worker
that signs, broadcasts, tracks and — until the chain's finality depth —
re-sends a reorged transaction, and fills a nonce gap no payout will fill
with a 0-value transaction of the hot key to itself (kind `nonce_fill`,
its one writer `PayoutWorker.write_fill`); the payout side
of the ledger (`ledger`: holds, landings, their undoing; the accounts are
core/ledger/accounts.py's); sweep planning; `store`, the reads an answer or
event shows beside a payout row (its messages are core/render/payouts.py's).

Must never: re-sign a payout with another nonce once one of its transactions
is signed; release a ledger hold twice or before the payout is final; leave a
payout confirmed without its transaction on the canonical chain; fill a nonce
a payout that can still land holds, or one nonce twice; decide an
invoice's state (it asks core/invoices/state.py through core/invoices/lifecycle.py);
render a message (events go through core/events/snapshots.py);
touch keys (the signer does, on its own policy); send funds to a token
contract or to Kassa's own addresses unless the operator allows it.
"""
