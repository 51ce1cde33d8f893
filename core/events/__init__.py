"""Events: the transactional outbox and the ordered, resumable stream over it.

Owns the events table and its sequence: an event commits in the transaction
of the change it announces (outbox.py), invoice and payout snapshots are
made in snapshots.py and the stream to consumers (stream.py) follows by sequence.
Never renumbers, edits or deletes an event; never writes outside the
caller's transaction.
"""
