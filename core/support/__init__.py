"""Support operations: the queue of what needs a person and the audited actions on it.

Owns the support_actions table (the audit trail, pending approvals and the
notes operators leave: acknowledgements, top-up requests, reviews,
attachments). The queue itself is derived from the state of invoices,
payouts, webhook deliveries and open reconciliation exceptions by one pure
decider (decide.py); only what state alone cannot say is stored. Actions go
through the owners of what they change (invoice marks through
core/invoices, refunds through core/payouts, reconciliation exceptions
through core/reconcile/exceptions.py): this package never writes their rows
itself, except re-queuing a failing endpoint's deliveries.
"""
