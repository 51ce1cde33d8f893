"""Invoices: what a merchant asked to be paid, and where each one stands.

Owns the `invoices` table and every change to an invoice's state:
  state.py      the pure decider — (invoice, event) → invoice, steps, refusal;
                the only place that knows the states, flags and event types
  lifecycle.py  the one writer: locks invoices, asks `state.decide`, saves the
                result, settles in the ledger and writes the outbox events, all
                in the caller's transaction
  invoicing.py  create, read, cancel and mark (the logic behind InvoiceService)
  clock.py      the core's clock: expiry and the late-payment window

Must never: write an invoice's state anywhere but lifecycle.apply; decide a
state outside state.decide; lose a unit that reached a deposit address — funds
on a cancelled, refunded, marked or long-expired invoice are recorded,
announced and left refundable (docs/architecture.md, "Every unit accounted
for"); let a cancel or mark race the block applier (both take the chain's
cursor lock first); render messages (core/events/snapshots.py renders its
events through core/render).
"""
