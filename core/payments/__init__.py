"""Payments: transfers to a deposit address Kassa derived, recorded against
their invoice.

Owns the `payments` table: `status` (the PaymentStatus type, one row's life
from mempool sighting to confirmed or reorged) and `store` (every SQL
statement that records, confirms, drops or reorgs a payment, and the sums an
invoice's state is decided from).

Must never: decide an invoice's state (core/invoices/state.py does), post to
the ledger (core/ledger/payments.py does, in the same transaction), or drop a
transfer to a derived address — every unit is recorded, whatever its
invoice's state (docs/architecture.md, "Every unit accounted for").
"""
