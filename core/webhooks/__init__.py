"""Signed webhooks: endpoints, deliveries stored before they are sent, retries.

Owns the webhook_endpoints and webhook_deliveries tables: dispatch.py turns
outbox events into deliveries, worker.py sends them, retry.py decides what
follows an attempt, signing.py makes the signature, targets.py refuses
internal addresses. Never sends inside a database transaction, never sends
to an address it has not checked, never logs a secret.
"""
