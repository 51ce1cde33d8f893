"""Domain rows to protobuf messages: invoices, payments, events, ledger, merchants,
payouts and sweeps.

Used by core/api (answers) and core/events (outbox snapshots, the event
stream's and webhooks' payloads). Never imported by a decider or a store:
rendering is the edge's concern, and the bytes must be the same wherever
they are made.
"""
